"""The network between agent and broker breaks (a black hole, a partition) while devices keep publishing:
every reading is scored exactly once, every redelivery is counted as a duplicate, and the agent comes back
on its own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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
from tests.integration.tcp_proxy import TcpProxy

pytestmark = pytest.mark.faults

WINDOW = 32  # the tiny bundle's window_len
READINGS = 240


@pytest.fixture
def proxy(broker: Broker) -> Iterator[TcpProxy]:
    with TcpProxy(broker.port) as running:
        yield running


def _payloads(count: int) -> list[bytes]:
    return reading_payloads(correlated_series(count, seed=21), time.time() - count - 60)


def _agent(start_agent: Callable[..., RunningAgent], bundle: Path, proxy: TcpProxy) -> RunningAgent:
    config = agent_config(bundle, proxy.port, broker={"keepalive_s": 5})
    return start_agent(config)


def _publish(port: int, payloads: list[bytes]) -> None:
    device = publisher(port)
    for payload in payloads:
        device.publish("sensors/n1/telemetry", payload, qos=1).wait_for_publish(5)
    device.loop_stop()
    device.disconnect()


def _exactly_once(agent: RunningAgent, readings: int) -> None:
    """Every reading scored once; every extra delivery counted as a duplicate and nothing else refused."""
    stats = agent.service.stats
    assert wait_until(lambda: stats.scored >= readings - WINDOW + 1, timeout=60), stats.snapshot()
    time.sleep(1.0)  # anything still in flight lands now, where the counts below would show it
    rejected = dict(stats.rejected)
    duplicates = rejected.pop("duplicate", 0)
    assert stats.scored == readings - WINDOW + 1, stats.snapshot()
    assert stats.received == readings + duplicates, stats.snapshot()
    assert rejected == {}, rejected


def test_a_black_holed_connection_is_noticed_by_keepalive_and_nothing_is_lost(
    tiny_bundle: Path,
    broker: Broker,
    proxy: TcpProxy,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    agent = _agent(start_agent, tiny_bundle, proxy)
    payloads = _payloads(READINGS)
    _publish(broker.port, payloads[:80])
    assert wait_until(lambda: agent.service.stats.scored == 80 - WINDOW + 1)
    proxy.black_hole()  # nothing moves, nothing closes: only the keepalive can tell
    _publish(broker.port, payloads[80:160])  # the broker sends some into the dead link, queues the rest
    assert wait_until(lambda: not agent.service.link.connected.is_set(), timeout=30), "keepalive missed it"
    assert agent.service.stats.scored == 80 - WINDOW + 1
    watch = recorder("edgegan/agent/edge-1/status")
    proxy.heal()
    assert agent.service.link.connected.wait(30), "agent did not reconnect after the black hole"
    watch.wait_for(lambda ms: ("edgegan/agent/edge-1/status", b"online", True) in ms)
    _publish(broker.port, payloads[160:])
    _exactly_once(agent, READINGS)
    assert agent.service.link.connects >= 2


def test_a_partition_mid_stream_loses_nothing_and_scores_nothing_twice(
    tiny_bundle: Path,
    broker: Broker,
    proxy: TcpProxy,
    start_agent: Callable[..., RunningAgent],
) -> None:
    agent = _agent(start_agent, tiny_bundle, proxy)
    payloads = _payloads(READINGS)
    _publish(broker.port, payloads[:100])
    proxy.partition()  # cut mid-stream: some of these readings were in flight to the agent
    _publish(broker.port, payloads[100:180])
    time.sleep(2.0)  # the agent retries against a refusing network meanwhile
    assert not agent.service.link.connected.is_set()
    proxy.heal()
    assert agent.service.link.connected.wait(30), "agent did not reconnect after the partition"
    _publish(broker.port, payloads[180:])
    _exactly_once(agent, READINGS)
    assert agent.service.link.connects >= 2
