"""Smoke run of the detection benchmark's harness on generated labelled data (no shared datasets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.detection import metrics
from benchmarks.detection.datasets import LabelledSeries
from benchmarks.detection.report import write_report
from benchmarks.detection.run import benchmark_config, make_baselines, pool, run_all
from tests.conftest import correlated_series


def _series() -> LabelledSeries:
    values = correlated_series(2600, seed=21) + np.random.default_rng(0).normal(0, 0.2, (2600, 3))
    labels = np.zeros(2600, dtype=np.int8)
    for start in (1900, 2300):
        values[start : start + 60, 1] += 8.0  # about 3.5 standard deviations: easy to rank high
        labels[start : start + 60] = 1
    return LabelledSeries(
        name="synthetic",
        group="Generated",
        channels=["s0", "s1", "s2"],
        train=values[:1500],
        test=values[1500:],
        test_labels=labels[1500:],
        blanked_train_rows=0,
    )


def test_the_harness_scores_every_detector_on_the_same_rows_and_writes_a_report(tmp_path: Path) -> None:
    config = benchmark_config(quick=True)
    results = run_all([_series()], config, tmp_path / "cache", quick=True)
    assert "failed" not in results[0], results[0]
    detectors = results[0]["detectors"]
    expected = {"EdgeGAN ORT FP32", "EdgeGAN ORT INT8", "EdgeGAN daemon (INT8)"}
    expected |= {d.name for d in make_baselines(True, "Generated")}
    assert set(detectors) == expected  # type: ignore[arg-type]
    for name, entry in detectors.items():  # type: ignore[attr-defined]
        counts = metrics.Counts(**entry["counts"])
        assert counts.tp + counts.fn == 120, name  # every test row counted once, same labels for all
        assert counts.tp + counts.fp + counts.fn + counts.tn == 1100, name
    # An easy shift: the GAN's ranking must be far above the 11% positive share.
    assert detectors["EdgeGAN ORT FP32"]["auc_pr"] > 0.5  # type: ignore[index]
    pooled = pool(results)["Generated"]["detectors"]
    assert pooled["reference: all ones"]["recall"] == 1.0
    assert pooled["reference: all ones"]["false_alarm_rate"] == 1.0
    payload = {"settings": _SETTINGS, "groups": pool(results)}
    report = write_report(payload, results, quick=True, folder=tmp_path / "report")
    text = report.read_text()
    assert "## Generated" in text and "Verdict for the daemon" in text and "PA-F1 (inflated)" in text
    assert sorted(p.name for p in (tmp_path / "report" / "plots").iterdir()) == [
        "pr_Generated_synthetic.png",
        "trace_Generated_synthetic.png",
    ]
    # A second run reuses every cached result instead of fitting again: the seeded fits would give equal
    # numbers either way, so the proof is that no cached file was rewritten.
    results = [
        *(tmp_path / "cache").glob("*/edgegan-*/result.json"),
        *(tmp_path / "cache").glob("*/baselines-*/*.json"),
    ]
    cached = {p: p.stat().st_mtime_ns for p in results}
    again = run_all([_series()], config, tmp_path / "cache", quick=True)
    assert again[0]["detectors"] == detectors
    assert len(cached) == 6  # EdgeGAN's result and the five baselines'
    assert {p: p.stat().st_mtime_ns for p in cached} == cached


_SETTINGS = {
    "window_len": 64,
    "false_alarm_budget": 1e-3,
    "threshold_rule": "POT",
    "holdout_fraction": 0.2,
    "quick": True,
}
