"""The main job's fleet stage on the embedded pure-Python broker, for machines without Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.demo.run import run_fleet


def test_the_fleet_stage_works_on_the_embedded_broker(pump_bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("amqtt", reason="amqtt is not installed (it comes with the train extra)")
    folder = tmp_path / "fleet"
    result = run_fleet(
        pump_bundle, folder, devices=6, rate_hz=20.0, duration_s=12.0, seed=3, broker_kind="embedded"
    )
    assert result.evaluation is not None
    figures = json.loads((folder / "evaluation.json").read_text())
    assert figures["agent"]["scored"] > 0
    assert figures["agent"]["rejected"].get("bad_json", 0) > 0  # the demo's malformed and NaN bursts
    assert result.report.published >= 0.9 * result.report.planned_readings
    truth = (folder / "truth.jsonl").read_text().splitlines()
    assert len(truth) == len(result.report.truth) > 0
