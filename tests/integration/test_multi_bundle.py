"""One daemon, several models: devices are routed to the bundle their config pattern names."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.config import load_agent_config
from edge_agent.errors import ConfigError
from edge_agent.tabular import read_table
from tests.conftest import correlated_series
from tests.integration.conftest import Broker, Recorder, RunningAgent, agent_config, publisher, wait_until


def test_devices_are_scored_by_the_bundle_their_route_names(
    tiny_bundle: Path,
    pump_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    base = agent_config(tiny_bundle, broker.port).model_dump(mode="json")
    routes = [{"devices": "pump-*", "bundle": "pump"}]
    config = load_agent_config(None, {**base, "bundles": {"pump": str(pump_bundle)}, "routes": routes})
    agent = start_agent(config)
    answers = recorder("edgegan/agent/edge-1/response/+")
    pump = read_table(pump_bundle.parent / "pump.csv")
    device = publisher(broker.port)
    start = time.time() - 400
    for i in range(120):
        pump_values = {name: float(v) for name, v in zip(pump.channels, pump.values[i], strict=True)}
        payload = json.dumps({"ts": start + i, "values": pump_values})
        device.publish("sensors/pump-1/telemetry", payload, qos=1)
    for i, row in enumerate(correlated_series(120, seed=2)):
        payload = json.dumps({"ts": start + i, "values": row.tolist()})
        device.publish("sensors/rig-1/telemetry", payload, qos=1)
    service = agent.service
    pump_window = service.models["pump"].windows.window_len
    tiny_window = service.pipeline.windows.window_len
    expected = (120 - pump_window + 1) + (120 - tiny_window + 1)
    assert wait_until(lambda: service.stats.scored >= expected), service.snapshot()
    snapshot = service.snapshot()
    # A device sent to the wrong bundle would have every reading rejected for its channels.
    assert snapshot["rejected"] == {} and snapshot["scored"] == expected
    assert snapshot["bundles"] == {
        "default": service.pipeline.bundle_id,
        "pump": service.models["pump"].bundle_id,
    }
    assert set(service.models["pump"].windows.devices()) == {"pump-1"}
    assert set(service.pipeline.windows.devices()) == {"rig-1"}

    # Commands name the model they act on.
    device.publish("edgegan/agent/edge-1/cmd/reload", json.dumps({"id": "r1", "model": "pump"}), qos=1)
    device.publish("edgegan/agent/edge-1/cmd/reload", json.dumps({"id": "r2", "model": "nope"}), qos=1)
    answers.wait_for(lambda ms: len(ms) >= 2)
    by_id = {a["id"]: a for a in answers.json_on("edgegan/agent/edge-1/response/reload")}
    assert by_id["r1"]["status"] == "ok" and service.models["pump"].bundle_id in str(by_id["r1"]["detail"])
    assert by_id["r2"]["status"] == "error" and "pump" in str(by_id["r2"]["detail"])
    device.loop_stop()


def test_a_route_to_an_unknown_bundle_is_a_config_error(tiny_bundle: Path) -> None:
    routes = [{"devices": "fan-*", "bundle": "fan"}]
    with pytest.raises(ConfigError, match="routes\\[0\\].bundle 'fan' is not one of: default"):
        load_agent_config(None, {"bundle": str(tiny_bundle), "routes": routes})
