"""A simulated fleet through the daemon's decoder and pipeline without a broker: faults found, transport
faults refused, clean devices quiet."""

from __future__ import annotations

from pathlib import Path

from edge_agent.bundle import load_bundle
from edge_agent.config import BackendConfig
from edge_agent.decision import DecisionConfig
from edge_agent.pipeline import open_pipeline
from edge_agent.simulator.fleet import Fleet
from edge_agent.simulator.offline_fleet import run_offline
from edge_agent.simulator.scenario import Scenario


def test_planned_faults_are_found_transport_faults_refused_and_clean_devices_stay_quiet(
    pump_bundle: Path,
) -> None:
    scenario = Scenario.model_validate(
        {
            "devices": 4,
            "rate_hz": 10.0,
            "duration_s": 60.0,
            "random": None,
            "events": [
                {"device": 0, "kind": "level_shift", "at_s": 20, "duration_s": 10, "magnitude": 1.5},
                {"device": 1, "kind": "malformed", "at_s": 20, "duration_s": 1},
            ],
        }
    )
    pipeline = open_pipeline(pump_bundle, BackendConfig(), DecisionConfig())
    result = run_offline(pipeline, Fleet(load_bundle(pump_bundle), scenario, start=1.8e9), scenario)
    evaluation = result.evaluation
    assert evaluation.recall_of("level_shift") == 1.0
    assert result.rejected == 10  # the malformed second of device 1 at 10 Hz, decoded and refused
    assert result.published == 4 * 600 and result.scored > 0
    assert evaluation.clean_device_hours == 2 * 60 / 3600  # devices 2 and 3 had no fault at all
    assert evaluation.clean_alerts == 0 and evaluation.false_alarms == 0
