"""Fuzzed payloads (hypothesis) at a live agent over a real Mosquitto: every message is counted, the agent
keeps scoring, and everything it publishes is strict JSON with finite numbers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import correlated_series
from tests.integration.conftest import (
    Broker,
    Recorder,
    RunningAgent,
    agent_config,
    publisher,
    reading_payloads,
    wait_until,
)
from tests.unit.test_telemetry_fuzz import documents

pytestmark = pytest.mark.faults

WINDOW = 32  # the tiny bundle's window_len

payloads = st.lists(
    st.one_of(documents.map(lambda d: json.dumps(d).encode()), st.binary(max_size=200)),
    min_size=60,
    max_size=120,
)


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fuzz=payloads)
def test_fuzzed_payloads_are_counted_and_scoring_goes_on_with_valid_json_out(
    fuzz: list[bytes],
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    watch = recorder("edgegan/#")
    agent = start_agent(
        agent_config(
            tiny_bundle,
            broker.port,
            agent_id=f"fuzz-{time.monotonic_ns()}",
            topics={"score": "edgegan/score/{device}"},
        )
    )
    device = publisher(broker.port)
    good = reading_payloads(correlated_series(80, seed=3), time.time() - 200)
    for i, payload in enumerate(good):
        device.publish("sensors/g1/telemetry", payload, qos=1).wait_for_publish(5)
        if i == 40:  # the fuzz lands mid-stream, from two other devices
            for item in fuzz:
                device.publish("sensors/fz/telemetry", item, qos=1).wait_for_publish(5)
                device.publish("sensors/fz-2/telemetry", item, qos=1).wait_for_publish(5)
    published = len(good) + 2 * len(fuzz)
    stats = agent.service.stats
    assert wait_until(lambda: stats.received == published, timeout=60), stats.snapshot()
    assert agent.thread.is_alive(), "the agent died on fuzzed input"
    # The good device's 80 readings fill 49 windows whatever its neighbours send (a fuzzed device whose
    # plausible readings pass every check may fill windows of its own).
    assert wait_until(lambda: len(watch.json_on("edgegan/score/g1")) >= 80 - WINDOW + 1), stats.snapshot()
    assert len(watch.json_on("edgegan/score/g1")) == 80 - WINDOW + 1
    time.sleep(0.6)  # one more stats message
    for topic, payload, _ in watch.messages:
        if not payload:  # a cleared retained topic
            continue
        document = orjson.loads(payload) if payload[:1] in (b"{", b"[") else None
        assert document is None or _finite(document), (topic, payload[:200])
    device.loop_stop()
    agent.shutdown()
