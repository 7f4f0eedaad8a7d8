"""A scoring loop that stalls (a slow disk, a swap, a long reload) while readings keep coming: the bounded
inbox pushes back on the broker and every reading is still scored once, in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import correlated_series
from tests.integration.conftest import (
    Broker,
    RunningAgent,
    agent_config,
    publisher,
    reading_payloads,
    wait_until,
)

pytestmark = pytest.mark.faults

WINDOW = 32  # the tiny bundle's window_len
READINGS = 300


def test_a_stalled_scoring_loop_loses_no_reading(
    tiny_bundle: Path, broker: Broker, start_agent: Callable[..., RunningAgent]
) -> None:
    config = agent_config(
        tiny_bundle, broker.port, broker={"keepalive_s": 5}, ingest={"inbox_size": 10, "batch_max": 4}
    )
    agent = start_agent(config)
    pipeline = agent.service.models[next(iter(agent.service.models))]
    score = pipeline.push_many
    stall = threading.Event()

    def slow(readings: list[object]) -> object:
        if not stall.is_set() and agent.service.stats.scored > 40:
            stall.set()
            time.sleep(4.0)  # longer than half the keepalive: the network thread's wait for room runs out
        return score(readings)  # type: ignore[arg-type]

    pipeline.push_many = slow  # type: ignore[method-assign]
    device = publisher(broker.port)
    for payload in reading_payloads(correlated_series(READINGS, seed=31), time.time() - READINGS - 60):
        device.publish("sensors/s1/telemetry", payload, qos=1)
    stats = agent.service.stats
    assert wait_until(lambda: stats.scored >= READINGS - WINDOW + 1, timeout=60), (
        stats.snapshot(),
        agent.service.link.inbox_overflow,
    )
    time.sleep(0.5)
    assert stall.is_set()
    assert agent.service.link.inbox_overflow >= 1, "the stall must outlast the network thread's wait"
    assert stats.scored == READINGS - WINDOW + 1, stats.snapshot()
    assert dict(stats.rejected) == {}, stats.rejected
    device.loop_stop()
