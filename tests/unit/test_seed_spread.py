"""The seed-spread study's verdict: which EdgeGAN operating points beat a baseline under the bar."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.detection.seed_spread import ENSEMBLES, RUNS, measure, verdicts


def _row(f1: float, far: float) -> dict[str, float]:
    return {"f1": f1, "false_alarm_rate": far}


def _group() -> dict[str, object]:
    return {
        "series": ["a", "b"],
        "detectors": {
            "EdgeGAN ORT FP32": _row(0.50, 0.010),
            "EdgeGAN ORT INT8": _row(0.55, 0.020),
            "EdgeGAN daemon (INT8)": _row(0.60, 0.030),
            "PCA Q": _row(0.30, 0.005),
            "PCA T2": _row(0.52, 0.020),
            "reference: all ones": _row(0.2, 1.0),
        },
        "levels": {
            "critical": {
                "EdgeGAN ORT FP32": _row(0.40, 0.004),
                "EdgeGAN ORT INT8": _row(0.30, 0.005),  # ties Q's F1: not a win
                "EdgeGAN daemon (INT8)": _row(0.45, 0.006),
            }
        },
    }


def test_a_baseline_is_beaten_only_by_a_higher_f1_at_an_equal_or_lower_false_alarm_rate() -> None:
    found = verdicts(_group())
    assert set(found) == {"PCA Q", "PCA T2"}  # references are not baselines
    assert found["PCA Q"]["beaten_by"] == ["EdgeGAN ORT FP32 at critical"]
    assert found["PCA T2"]["beaten_by"] == ["EdgeGAN ORT INT8 at alert"]  # equal FAR counts, higher F1


def test_each_seed_file_is_read_and_a_missing_one_is_left_out(tmp_path: Path) -> None:
    group_name, files = RUNS["SMD (floors)"]
    for stem in [*files[:2], ENSEMBLES["SMD (floors)"][0][1]]:
        (tmp_path / f"{stem}.json").write_text(json.dumps({"groups": {group_name: _group()}}))
    seeds = measure(tmp_path)["SMD (floors)"]
    assert [s["fit"] for s in seeds] == ["seed 0", "seed 1", "members 0+1+2"]
    assert seeds[0]["series_pooled"] == 2
    assert "EdgeGAN daemon (INT8) at critical" in seeds[0]["operating_points"]  # type: ignore[operator]
    assert measure(tmp_path)["realKnownCause (default model)"] == []
