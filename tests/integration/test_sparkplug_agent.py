"""Sparkplug B against a real Mosquitto: a simulated edge node's alias-only DDATA are scored and alerted
like JSON telemetry, data before any birth make the agent ask for a rebirth (and are scored once it came),
a DDEATH publishes the device offline, and garbage on Sparkplug topics is refused without stopping it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.simulator.sparkplug_node import SparkplugNode
from tests.conftest import correlated_series
from tests.integration.conftest import Broker, Recorder, RunningAgent, agent_config, publisher, wait_until

WINDOW = 32  # the tiny bundle's window_len


def _rows(values: object, start: float) -> list[tuple[float, list[float]]]:
    return [(start + i, [float(v) for v in row]) for i, row in enumerate(values)]  # type: ignore[attr-defined]


def test_a_sparkplug_edge_node_is_scored_alerted_reborn_and_taken_offline(
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    watch = recorder("edgegan/#", "spBv1.0/plant/NCMD/#")
    config = agent_config(
        tiny_bundle,
        broker.port,
        ingest={"max_payload_bytes": 65536},
        sparkplug={"enabled": True, "group_id": "plant", "rebirth_interval_s": 1},
    )
    agent = start_agent(config)
    stats = agent.service.stats
    start = time.time() - 400
    # A node the agent has seen born: 260 rows, a fault on s1 from row 180, 10 rows (30 metrics) a message.
    faulty = correlated_series(260, seed=31)
    faulty[180:, 1] += 4 * faulty[:, 1].std()
    node = SparkplugNode("plant", "gw1", {"pump": ["s0", "s1", "s2"]})
    node.connect("127.0.0.1", broker.port)
    node.birth(start, {"pump": [float(v) for v in faulty[0]]})
    rows = _rows(faulty, start)
    for i in range(0, len(rows), 10):
        node.data("pump", rows[i : i + 10])
    assert wait_until(lambda: stats.scored >= 260 - WINDOW + 1), stats.snapshot()
    watch.wait_for(lambda ms: any(t == "edgegan/alert/gw1-pump" for t, _, _ in ms))
    alert = watch.json_on("edgegan/alert/gw1-pump")[0]
    assert alert["type"] == "start" and alert["ts"] >= start + 180
    assert {c["channel"] for c in alert["top_channels"]} >= {"s1"}
    # A node whose births the agent missed: its first data ask for a rebirth, later data are scored.
    late = SparkplugNode("plant", "gw2", {"fan": ["s0", "s1", "s2"]})
    normal = _rows(correlated_series(120, seed=32), start)
    late.connect("127.0.0.1", broker.port)
    late.set_values({"fan": normal[0][1]})  # what its rebirth will report
    late.data("fan", normal[:10])
    watch.wait_for(lambda ms: any(t == "spBv1.0/plant/NCMD/gw2" for t, _, _ in ms))
    assert wait_until(lambda: late.rebirths == 1 and stats.rejected["unknown_alias"] == 30)
    assert (
        stats.sparkplug["rebirth_requests"] == 1
        and agent.service.snapshot()["sparkplug"]["rebirth_requests"] == 1
    )
    time.sleep(0.5)  # the births answer the request
    for i in range(10, len(normal), 10):
        late.data("fan", normal[i : i + 10])
    fan_windows = 110 - WINDOW + 1
    assert wait_until(lambda: stats.scored >= 260 - WINDOW + 1 + fan_windows), stats.snapshot()
    assert watch.json_on("edgegan/alert/gw2-fan") == []
    # Garbage on a data topic is refused with its reason; the agent goes on.
    device = publisher(broker.port)
    device.publish("spBv1.0/plant/DDATA/gw1/pump", b"\x0a\xff\xff", qos=1).wait_for_publish(5)
    assert wait_until(lambda: stats.rejected["bad_protobuf"] == 1)
    # The node reconnects (a new session): the late will of the old one is ignored, not a death.
    old_will = late.node_death()
    late.new_session()
    late.birth(time.time(), {"fan": normal[-1][1]})
    device.publish("spBv1.0/plant/NDEATH/gw2", old_will, qos=1).wait_for_publish(5)
    assert wait_until(lambda: stats.sparkplug["stale_deaths"] == 1)
    time.sleep(0.3)  # what the agent published for it has reached the recorder
    assert ("edgegan/device/gw2-fan/availability", b"offline", False) not in watch.messages
    # A death is published as the device's availability at once, not after a silence.
    node.device_death("pump", time.time())
    watch.wait_for(lambda ms: ("edgegan/device/gw1-pump/availability", b"offline", False) in ms)
    assert agent.thread.is_alive()
    node.disconnect()
    late.disconnect()
    device.loop_stop()


@pytest.mark.faults
def test_json_telemetry_keeps_working_beside_sparkplug(
    tiny_bundle: Path, broker: Broker, start_agent: Callable[..., RunningAgent]
) -> None:
    config = agent_config(tiny_bundle, broker.port, sparkplug={"enabled": True})
    agent = start_agent(config)
    device = publisher(broker.port)
    start = time.time() - 100
    for i, row in enumerate(correlated_series(40, seed=4)):
        payload = f'{{"ts": {start + i}, "values": [{row[0]}, {row[1]}, {row[2]}]}}'
        device.publish("sensors/json-1/telemetry", payload, qos=1).wait_for_publish(5)
    assert wait_until(lambda: agent.service.stats.scored == 40 - WINDOW + 1), agent.service.stats.snapshot()
    device.loop_stop()


def test_the_agent_as_primary_host_lets_waiting_nodes_publish_and_goes_offline_on_stop(
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    # A node configured with a primary host publishes nothing until the host's STATE says online.
    node = SparkplugNode("plant", "gw3", {"pump": ["s0", "s1", "s2"]})
    node.connect("127.0.0.1", broker.port)
    assert not node.wait_for_host("edgegan-host", timeout=1.0)
    config = agent_config(
        tiny_bundle,
        broker.port,
        ingest={"max_payload_bytes": 65536},
        sparkplug={"enabled": True, "group_id": "plant", "host_id": "edgegan-host"},
    )
    agent = start_agent(config)
    assert node.wait_for_host("edgegan-host", timeout=10.0)
    values = correlated_series(80, seed=33)
    start = time.time() - 200
    node.birth(start, {"pump": [float(v) for v in values[0]]})
    rows = _rows(values, start)
    for i in range(0, len(rows), 10):
        node.data("pump", rows[i : i + 10])
    assert wait_until(lambda: agent.service.stats.scored >= 80 - WINDOW + 1)
    # Retained, so a node that connects later learns it at once; offline (same timestamp) on a clean stop.
    late = recorder("spBv1.0/STATE/#")
    late.wait_for(lambda ms: len(ms) >= 1)
    topic, payload, retained = late.messages[0]
    birth = json.loads(payload)
    assert topic == "spBv1.0/STATE/edgegan-host" and retained and birth["online"] is True
    agent.shutdown()
    late.wait_for(lambda ms: len(ms) >= 2)
    death = json.loads(late.messages[-1][1])
    assert death == {"online": False, "timestamp": birth["timestamp"]}
    assert not node.wait_for_host("edgegan-host", timeout=1.0)
    node.disconnect()
