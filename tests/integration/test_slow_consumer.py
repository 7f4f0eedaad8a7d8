"""A scoring loop that stalls (a slow disk, a swap, a long reload) while readings keep coming: the bounded
inbox pushes back on the broker and every reading is still scored once, in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
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


def _stalling_agent(
    start_agent: Callable[..., RunningAgent],
    bundle: Path,
    port: int,
    keepalive_s: int,
    after_scored: int,
    stall_s: float,
    every_batch: bool,
) -> tuple[RunningAgent, threading.Event]:
    """An agent with a 10-message inbox whose scoring stalls `stall_s` once `after_scored` windows are
    scored (on every later batch with `every_batch`); the event says the stall began."""
    config = agent_config(
        bundle, port, broker={"keepalive_s": keepalive_s}, ingest={"inbox_size": 10, "batch_max": 4}
    )
    agent = start_agent(config)
    pipeline = agent.service.models[next(iter(agent.service.models))]
    score = pipeline.push_many
    stalled = threading.Event()

    def slow(readings: list[object]) -> object:
        if (every_batch or not stalled.is_set()) and agent.service.stats.scored > after_scored:
            stalled.set()
            agent.stop.wait(stall_s)  # a stop ends the stall: the test times the link's stop, not this
        return score(readings)  # type: ignore[arg-type]

    pipeline.push_many = slow  # type: ignore[method-assign]
    return agent, stalled


def _publish_readings(port: int, device_id: str, seed: int) -> mqtt.Client:
    device = publisher(port)
    for payload in reading_payloads(correlated_series(READINGS, seed=seed), time.time() - READINGS - 60):
        device.publish(f"sensors/{device_id}/telemetry", payload, qos=1)
    return device


def test_a_stalled_scoring_loop_loses_no_reading(
    tiny_bundle: Path, broker: Broker, start_agent: Callable[..., RunningAgent]
) -> None:
    # 4 s: longer than half the keepalive, so the network thread's wait for room runs out.
    agent, stall = _stalling_agent(start_agent, tiny_bundle, broker.port, 5, 40, 4.0, every_batch=False)
    device = _publish_readings(broker.port, "s1", seed=31)
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


def test_a_stop_with_a_full_inbox_is_prompt_and_leaves_the_rest_to_the_next_session(
    tiny_bundle: Path, broker: Broker, start_agent: Callable[..., RunningAgent]
) -> None:
    # keepalive 30 s: a network thread waiting for room in the full inbox waits 15 s per message; every
    # batch stalls 2 s, so the inbox stays full while the broker holds the rest.
    agent, stalled = _stalling_agent(start_agent, tiny_bundle, broker.port, 30, 20, 2.0, every_batch=True)
    device = _publish_readings(broker.port, "s2", seed=32)
    assert stalled.wait(30)
    assert wait_until(lambda: agent.service.link.inbox_depth() >= 10, timeout=10)
    began = time.monotonic()
    agent.shutdown()  # joins the agent's thread, 15 s at most
    took = time.monotonic() - began
    first = agent.service.stats.received
    assert took < 8.0, f"stop took {took:.1f} s with a full inbox"
    assert first < READINGS, "the stop must come while the broker still holds readings"
    second = start_agent(agent.service.config)  # the same session: what the first left comes again
    assert wait_until(lambda: first + second.service.stats.received >= READINGS, timeout=60), (
        first,
        second.service.stats.snapshot(),
    )
    device.loop_stop()
