"""Two sharded agents on one broker: every device is scored, each by exactly one agent."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from tests.conftest import correlated_series
from tests.integration.conftest import (
    Broker,
    Recorder,
    RunningAgent,
    agent_config,
    publisher,
    wait_until,
)

DEVICES = [f"unit-{i:02d}" for i in range(12)]
READINGS = 40


def test_two_agents_split_the_fleet_without_overlap(
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    watch = recorder("edgegan/score/#")
    for index in (0, 1):
        start_agent(
            agent_config(
                tiny_bundle,
                broker.port,
                shard={"index": index, "count": 2},
                topics={"score": "edgegan/score/{device}"},
                agent_id=f"shard-{index}",
            )
        )
    device = publisher(broker.port)
    rows = correlated_series(READINGS, seed=12)
    start = time.time() - 100
    for i in range(READINGS):
        for name in DEVICES:
            payload = {"ts": start + i, "values": rows[i].tolist()}
            device.publish(f"sensors/{name}/telemetry", json.dumps(payload), qos=1)
    expected = len(DEVICES) * (READINGS - 31)
    watch.wait_for(lambda ms: len(ms) >= expected)
    time.sleep(0.5)  # anything beyond the expected count would be a duplicate: give it time to show
    scorers: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for _topic, payload, _ in watch.messages:
        item = json.loads(payload)
        scorers[item["device"]].add(item["agent_id"])
        counts[item["device"]] += 1
    assert set(scorers) == set(DEVICES)
    assert all(len(agents) == 1 for agents in scorers.values()), scorers
    assert all(count == READINGS - 31 for count in counts.values()), counts
    assert {a for agents in scorers.values() for a in agents} == {"shard-0", "shard-1"}
    device.loop_stop()


def test_an_agent_in_a_shared_subscription_group_scores_what_the_broker_deals_it(
    tiny_bundle: Path,
    broker: Broker,
    start_agent: Callable[..., RunningAgent],
) -> None:
    agent = start_agent(agent_config(tiny_bundle, broker.port, topics={"shared_group": "edgegan"}))
    device = publisher(broker.port)
    start = time.time() - READINGS
    for i, row in enumerate(correlated_series(READINGS, seed=4)):
        payload = json.dumps({"ts": start + i, "values": row.tolist()})
        device.publish("sensors/unit-a/telemetry", payload, qos=1).wait_for_publish(5)
    window = agent.service.pipeline.windows.window_len
    # The $share/edgegan/ prefix is on the subscription only: messages arrive on their plain topic.
    assert wait_until(lambda: agent.service.stats.scored == READINGS - window + 1), agent.service.snapshot()
    assert agent.service.snapshot()["rejected"] == {}
    device.loop_stop()
