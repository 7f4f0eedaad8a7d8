"""Scenario files are validated with their line; random faults are placed where a scorer can see them;
the evaluation matches alerts to faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.errors import ConfigError
from edge_agent.simulator.evaluate import evaluate
from edge_agent.simulator.faults import ANOMALY_KINDS, SPIKE
from edge_agent.simulator.scenario import Scenario, load_scenario, plan_faults

CHANNELS = ["a", "b", "c"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("devices: 3\nrandom:\n  kinds: [spike, meteor]\n", "meteor"),
        ("devices: 3\nevents:\n  - {device: 5, kind: drift, at_s: 1, duration_s: 2}\n", "device 5"),
        ("devices: 3\nrandom:\n  duration_s: [10, 2]\n", "low <= high"),
        ("devices: 3\nspeed: 4\n", "speed"),
        ("devices: 0\n", "devices"),
    ],
)
def test_a_bad_scenario_file_names_its_problem_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_configs_scenario_file_is_valid() -> None:
    scenario = load_scenario(Path(__file__).parents[2] / "configs" / "scenario.yaml")
    assert scenario.events and scenario.random is not None


def test_random_faults_leave_the_first_window_alone_and_never_share_a_window() -> None:
    scenario = Scenario(devices=40, rate_hz=2.0, duration_s=3600, seed=5)
    rate, window = 2.0, 32
    starts = [1000.0 + i for i in range(40)]
    planned = plan_faults(scenario, CHANNELS, starts, [rate] * 40, window)
    window_s = window / rate
    assert len({p.device for p in planned}) == 20  # device_fraction 0.5
    assert {p.kind for p in planned} == set(ANOMALY_KINDS)
    by_device: dict[str, list[tuple[float, float]]] = {}
    for fault in planned:
        index = int(fault.device.split("-")[1]) - 1
        assert fault.start - starts[index] >= window_s
        assert fault.end <= starts[index] + scenario.duration_s - window_s
        if fault.kind == SPIKE:
            assert fault.end - fault.start == pytest.approx(2 / rate)
        by_device.setdefault(fault.device, []).append((fault.start, fault.end))
    for spans in by_device.values():
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start - end >= window_s


def test_same_seed_same_plan() -> None:
    scenario = Scenario(devices=10, duration_s=600, seed=9)
    plan = [plan_faults(scenario, CHANNELS, [0.0] * 10, [1.0] * 10, 16) for _ in range(2)]
    assert [(p.device, p.kind, p.start) for p in plan[0]] == [(p.device, p.kind, p.start) for p in plan[1]]


def test_evaluation_counts_detections_delays_and_false_alarms() -> None:
    truth = [
        {"device": "a", "kind": "level_shift", "start": 100.0, "end": 110.0},
        {"device": "b", "kind": "level_shift", "start": 100.0, "end": 110.0},
        {"device": "c", "kind": "drift", "start": 200.0, "end": 230.0},
        {"device": "d", "kind": "malformed", "start": 50.0, "end": 51.0},
    ]
    alerts = [
        {"device": "a", "type": "start", "ts": 104.0},
        {"device": "a", "type": "end", "ts": 106.0},
        {"device": "a", "type": "start", "ts": 111.0},  # the step back at the fault's end: a repeat
        {"device": "b", "type": "start", "ts": 150.0},  # after end + grace (20 s): a false alarm, a miss
        {"device": "c", "type": "start", "ts": 236.0},  # within grace: detected, 36 s late
        {"device": "d", "type": "start", "ts": 55.0},  # inside a transport fault: must not happen
    ]
    result = evaluate(truth, alerts, device_hours=2.0, grace_s=20.0)
    assert result.recall_of("level_shift") == 0.5
    assert result.recall_of("drift") == 1.0
    rows = {row.kind: row for row in result.kinds}
    assert rows["level_shift"].median_delay_s == 4.0 and rows["drift"].median_delay_s == 36.0
    assert result.alerts == 5 and result.false_alarms == 2 and result.repeats == 1
    assert result.false_alarms_per_device_hour == 1.0
    assert "level_shift" in result.table() and "spike" not in result.table()


def test_faults_that_cannot_happen_in_the_run_are_a_warning_with_the_numbers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    late = Scenario(
        devices=2,
        duration_s=100,
        random=None,
        events=[{"device": 0, "kind": "spike", "at_s": 150, "duration_s": 1}],
    )
    plan_faults(late, CHANNELS, [0.0, 0.0], [1.0, 1.0], 16)
    assert any("start at or after the run's end (100 s)" in r.getMessage() for r in caplog.records)
    caplog.clear()
    short = Scenario(devices=2, duration_s=30, random={"per_device_hour": 6})
    assert plan_faults(short, CHANNELS, [0.0, 0.0], [1.0, 1.0], 16) == []
    message = next(r.getMessage() for r in caplog.records if "drew no fault" in r.getMessage())
    assert "6.0 faults per device-hour" in message and "over 30 s" in message
