"""Model hot swap on the command topic: a good bundle swaps in, a corrupt one leaves the old one serving."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.bundle import MANIFEST_NAME, SCORER_INT8
from tests.conftest import correlated_series
from tests.integration.conftest import Broker, RunningAgent, agent_config, publisher, wait_until

COMMAND = "edgegan/agent/edge-1/cmd/reload"


def _variant(source: Path, folder: Path, bundle_id: str, corrupt: bool = False) -> Path:
    target = folder / bundle_id
    shutil.copytree(source, target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    manifest["bundle_id"] = bundle_id
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    if corrupt:
        with (target / SCORER_INT8).open("r+b") as handle:
            handle.seek(100)
            handle.write(b"\xde\xad\xbe\xef")
    return target


@pytest.mark.faults
def test_reload_command_swaps_good_bundles_and_refuses_corrupt_ones(
    tiny_bundle: Path, broker: Broker, start_agent: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    good = _variant(tiny_bundle, tmp_path, "swapped-good")
    bad = _variant(tiny_bundle, tmp_path, "swapped-bad", corrupt=True)
    device = publisher(broker.port)
    # A retained reload waiting on the broker must be ignored when the agent subscribes.
    device.publish(COMMAND, json.dumps({"bundle": str(good)}), qos=1, retain=True).wait_for_publish(5)
    agent = start_agent(
        agent_config(tiny_bundle, broker.port).model_copy(update={"bundle_roots": [tmp_path]})
    )
    service = agent.service
    original = service.pipeline.bundle_id
    assert wait_until(lambda: service.stats.rejected["retained_command"] == 1)
    assert service.pipeline.bundle_id == original
    device.publish(COMMAND, b"", qos=1, retain=True).wait_for_publish(5)  # clear the retained command

    start = time.time() - 100
    rows = correlated_series(60, seed=9)

    def send(i: int) -> None:
        payload = {"ts": start + i, "values": rows[i].tolist()}
        device.publish("sensors/hs/telemetry", json.dumps(payload), qos=1).wait_for_publish(5)

    for i in range(40):
        send(i)
    assert wait_until(lambda: service.stats.scored == 40 - 31)

    device.publish(COMMAND, json.dumps({"bundle": str(bad)}), qos=1).wait_for_publish(5)
    assert wait_until(lambda: service.stats.reloads_failed == 1), service.stats.last_reload_error
    assert "sha256" in str(service.stats.last_reload_error)
    assert service.pipeline.bundle_id == original, "a corrupt bundle must leave the old one serving"
    send(40)
    assert wait_until(lambda: service.stats.scored == 41 - 31)

    device.publish(COMMAND, json.dumps({"bundle": str(good)}), qos=1).wait_for_publish(5)
    assert wait_until(lambda: service.pipeline.bundle_id == "swapped-good")
    assert service.stats.reloads_ok == 1
    send(41)  # same shapes: the device's window survived the swap, so this reading is scored at once
    assert wait_until(lambda: service.stats.scored == 42 - 31)
    device.loop_stop()
