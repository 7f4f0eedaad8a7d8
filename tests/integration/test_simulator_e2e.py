"""simulate -> Mosquitto -> agent -> alerts, evaluated against the simulator's ground truth; CSV replay."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import BrokerConfig
from edge_agent.simulator.run import replay_csv, simulate
from edge_agent.simulator.scenario import Scenario
from tests.conftest import write_csv
from tests.integration.conftest import Broker, Recorder, RunningAgent, agent_config

OBVIOUS = ["level_shift", "drift", "noise_burst"]


def test_obvious_faults_are_found_and_clean_devices_stay_quiet(
    pump_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
    tmp_path: Path,
) -> None:
    agent = start_agent(agent_config(pump_bundle, broker.port))
    truth_topics = recorder("sim/+/truth")
    rate = 20.0  # a 32-reading window every 1.6 s
    events = [
        {"device": i, "kind": kind, "at_s": 5.0, "duration_s": 4.0, "magnitude": 2.0}
        for i, kind in enumerate(OBVIOUS * 2)
    ]
    events.append({"device": 6, "kind": "malformed", "at_s": 5.0, "duration_s": 1.0})
    scenario = Scenario(devices=10, rate_hz=rate, duration_s=14.0, seed=21, random=None, events=events)
    result = simulate(
        pump_bundle,
        BrokerConfig(port=broker.port),
        scenario,
        truth_file=tmp_path / "truth.jsonl",
        score_alerts=True,
        settle_s=2.0,
    )
    evaluation = result.evaluation
    assert evaluation is not None
    print(evaluation.table())
    for kind in OBVIOUS:
        assert evaluation.recall_of(kind) == 1.0, kind
    assert evaluation.false_alarms <= 1  # four clean devices and a malformed burst over 10 x 14 s
    written = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert len(written) == len(events) == len(truth_topics.messages)
    assert result.report.published >= 0.95 * 10 * rate * 14.0 - 20  # malformed ones are still published
    assert agent.service.stats.rejected["bad_json"] == 20  # 1 s at 20 Hz of truncated payloads
    vetting = result.report.vetting  # clean streams are judged by default, and the report says so
    assert vetting is not None and vetting["chunks"] >= 10 * 10, vetting  # 280 rows, 22-row chunks


def test_the_fleet_follows_an_agent_with_custom_topics(
    pump_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    topics = {"telemetry": "plant/+/data", "alert": "plant/alerts/{device}"}
    agent = start_agent(agent_config(pump_bundle, broker.port, topics=topics))
    default_topics = recorder("sensors/#")
    events = [{"device": 0, "kind": "level_shift", "at_s": 4.0, "duration_s": 4.0, "magnitude": 2.0}]
    scenario = Scenario(devices=2, rate_hz=20.0, duration_s=10.0, seed=5, random=None, events=events)
    result = simulate(
        pump_bundle,
        BrokerConfig(port=broker.port),
        scenario,
        score_alerts=True,
        settle_s=2.0,
        topics=agent.service.config.topics,
    )
    assert result.evaluation is not None
    assert result.evaluation.recall_of("level_shift") == 1.0, result.evaluation.table()
    assert agent.service.stats.scored > 0 and not default_topics.messages


def test_replay_keeps_the_files_timing_sped_up(
    broker: Broker, recorder: Callable[..., Recorder], tmp_path: Path
) -> None:
    values = np.column_stack([np.arange(20.0), np.arange(20.0) * 2])
    csv = write_csv(tmp_path / "rec.csv", values, names=["x", "y"])  # one row per second
    watch = recorder("sensors/+/telemetry")
    started = time.time()
    report = replay_csv(csv, BrokerConfig(port=broker.port), "rec-1", speed=10.0)
    took = time.time() - started
    assert report.published == 20
    watch.wait_for(lambda messages: len(messages) >= 20)
    received = [json.loads(payload) for _, payload, _ in watch.messages]
    assert [m["values"]["y"] for m in received] == [2.0 * i for i in range(20)]
    stamps = np.array([m["ts"] for m in received])
    assert 1.5 < stamps[-1] - stamps[0] < 2.6  # 19 s of data at 10x: 1.9 s
    assert 1.5 < took < 5.0
    assert np.all(np.diff(stamps) > 0.05)  # spread out, not sent in a burst


def test_replay_publishes_the_chosen_columns_and_names_those_left_out(
    broker: Broker, recorder: Callable[..., Recorder], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A label column in an export must not become a channel the agent refuses as extra_channel."""
    caplog.set_level(logging.INFO, logger="edge_agent.simulator.run")
    values = np.column_stack([np.arange(10.0), np.arange(10.0) * 2, np.zeros(10)])
    csv = write_csv(tmp_path / "rec.csv", values, names=["x", "y", "label"])
    watch = recorder("sensors/+/telemetry")
    report = replay_csv(csv, BrokerConfig(port=broker.port), "rec-2", speed=50.0, columns=["x", "y"])
    assert report.published == 10
    watch.wait_for(lambda messages: len(messages) >= 10)
    assert all(set(json.loads(payload)["values"]) == {"x", "y"} for _, payload, _ in watch.messages)
    assert any("left out: label" in r.getMessage() for r in caplog.records)
