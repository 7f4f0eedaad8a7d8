"""Smoke run of the detection benchmark's harness on generated labelled data (no shared datasets)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.detection import metrics
from benchmarks.detection.datasets import LabelledSeries
from benchmarks.detection.report import write_report
from benchmarks.detection.run import (
    baseline_folder,
    benchmark_config,
    carried_results,
    edgegan_folder,
    forget,
    make_baselines,
    parse_settings,
    pool,
    run_all,
)
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
    config = benchmark_config(quick=True, settings={"fit.threads": 1, "model.window_level": "remove"})
    # one thread: `make test` runs two workers; one level: the harness, not the level choice, is tested here
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
    # No drift in this series: few normal test rows score above everything the holdout showed (a few do:
    # overlapping windows make the holdout's maximum a loose estimate of its tail). Rows whose 64-row window
    # still holds part of an anomaly (63 after each of the two) are not counted as normal.
    for name in ("EdgeGAN ORT FP32", "EdgeGAN ORT INT8", "PCA T2"):
        entry = detectors[name]  # type: ignore[index]
        assert entry["untouched_normal_rows"] == 980 - 2 * 63, name
        assert 0 <= entry["normal_above_holdout_max"] < 0.15 * 854, (name, entry["normal_above_holdout_max"])
    assert detectors["EdgeGAN daemon (INT8)"]["normal_above_holdout_max"] is None  # type: ignore[index]
    pooled = pool(results)["Generated"]["detectors"]
    above = detectors["EdgeGAN ORT FP32"]["normal_above_holdout_max"]  # type: ignore[index]
    assert pooled["EdgeGAN ORT FP32"]["normal_share_above_holdout_max"] == above / 854  # one series
    assert pooled["EdgeGAN daemon (INT8)"]["normal_share_above_holdout_max"] is None  # no scores to compare
    assert pooled["reference: all ones"]["recall"] == 1.0
    assert pooled["reference: all ones"]["false_alarm_rate"] == 1.0
    # At matched false alarms: each side's oracle threshold never raises more false alarms than the other's.
    matched = pool(results)["Generated"]["matched"]
    assert set(matched) == {d.name for d in make_baselines(True, "Generated")}
    for name, cells in matched.items():
        entry = detectors[name]  # type: ignore[index]
        assert cells["baseline"]["f1"] == pytest.approx(pooled[name]["f1"])
        assert cells["ours"]["f1"] == pytest.approx(pooled["EdgeGAN ORT INT8"]["f1"])
        mine = cells["ours_at_baseline_false_alarms"]["false_alarm_rate"]
        assert mine <= entry["counts"]["fp"] / 980, name
        theirs = cells["baseline_at_our_false_alarms"]["false_alarm_rate"]
        assert theirs <= pooled["EdgeGAN ORT INT8"]["false_alarm_rate"] + 1e-12, name
    # Every detector at the critical level too: the same rows, never more alarms than at its threshold.
    for name, entry in detectors.items():  # type: ignore[attr-defined]
        critical = metrics.Counts(**entry["levels"]["critical"]["counts"])
        assert critical.tp + critical.fp + critical.fn + critical.tn == 1100, name
        assert critical.tp + critical.fp <= entry["counts"]["tp"] + entry["counts"]["fp"], name
        warning = metrics.Counts(**entry["levels"]["warning"]["counts"])
        assert warning.tp + warning.fp >= entry["counts"]["tp"] + entry["counts"]["fp"], name
        if entry["threshold"] is not None:
            assert entry["levels"]["critical"]["threshold"] >= entry["threshold"], name
            assert entry["levels"]["warning"]["threshold"] <= entry["threshold"], name
    # Every detector under the agent's alert rule too, on the same rows; the daemon's is the rule itself, and
    # the INT8 graph's scores through the benchmark's copy of the rule raise what the daemon raised.
    for name, entry in detectors.items():  # type: ignore[attr-defined]
        ruled = metrics.Counts(**entry["alert_rule"]["counts"])
        assert ruled.tp + ruled.fp + ruled.fn + ruled.tn == 1100, name
    daemon = detectors["EdgeGAN daemon (INT8)"]  # type: ignore[index]
    assert daemon["alert_rule"]["counts"] == daemon["counts"]
    int8_ruled = detectors["EdgeGAN ORT INT8"]["alert_rule"]["counts"]  # type: ignore[index]
    assert abs(int8_ruled["tp"] - daemon["counts"]["tp"]) <= 3
    assert abs(int8_ruled["fp"] - daemon["counts"]["fp"]) <= 3
    payload = {"settings": _SETTINGS, "groups": pool(results)}
    assert set(payload["groups"]["Generated"]["levels"]["critical"]) == expected
    assert set(payload["groups"]["Generated"]["alert_rule"]) == expected
    report = write_report(payload, results, quick=True, folder=tmp_path / "report")
    text = report.read_text()
    assert (
        "At each severity level" in text
        and "critical (budget 0.0001)" in text
        and "warning (budget 0.01)" in text
    )
    assert "Which of EdgeGAN's operating points beat each baseline" in text
    assert "Level for level (critical:" in text
    assert "## Generated" in text and "Verdict for the daemon" in text and "PA-F1 (inflated)" in text
    assert "At matched false alarms" in text and "ranks better at both points" in text
    assert "Under the agent's alert rule" in text and "daemon beats it, both under the rule" in text
    assert "normal test rows above the holdout's highest score" in text
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


def test_carried_groups_come_from_the_earlier_results_and_the_report_says_so(tmp_path: Path) -> None:
    """`--carry`: re-measure one dataset, report the others as the last run measured them."""
    counts = {"tp": 5, "fp": 1, "fn": 5, "tn": 89, "events": 1, "events_detected": 1}
    counts |= {"delay_rows_sum": 0, "pa_tp": 10, "pa_fp": 1, "pa_fn": 0}
    entry = {"counts": counts, "auc_pr": 0.5, "threshold": 1.0, "alarm_rate": 0.06}
    entry |= {"fit_seconds": 1.0, "score_us_per_window": 1.0}
    names = ("EdgeGAN ORT FP32", "EdgeGAN ORT INT8", "EdgeGAN daemon (INT8)", "PCA T2")
    series = {"test_rows": 100, "test_positive_rows": 10, "train_rows": 100, "blanked_train_rows": 0}
    series |= {"detectors": {name: entry for name in names}}
    earlier = {
        "machine": {"measured_at": "2026-01-01T00:00:00"},
        "series": [{"series": "a", "group": "Old", **series}, {"series": "b", "group": "Rerun", **series}],
    }
    path = tmp_path / "detection.json"
    path.write_text(json.dumps(earlier))
    labels = np.zeros(2000, dtype=np.int8)  # long enough for the random 1% reference to raise alarms
    labels[400:600] = 1
    old = LabelledSeries("a", "Old", ["s0"], np.zeros((2000, 1)), np.zeros((2000, 1)), labels, 0)
    carried = carried_results(path, [old], tmp_path / "cache")
    assert [(c["series"], c["group"], c["carried_from"]) for c in carried] == [
        ("a", "Old", "2026-01-01T00:00:00")
    ]
    # Carried again from a later file, the entry keeps the date it was measured, not the later file's.
    later = {"machine": {"measured_at": "2026-02-02T00:00:00"}, "series": [dict(carried[0])]}
    path.write_text(json.dumps(later))
    assert carried_results(path, [old], tmp_path / "cache")[0]["carried_from"] == "2026-01-01T00:00:00"
    path.write_text(json.dumps(earlier))
    plots = tmp_path / "report" / "plots"
    plots.mkdir(parents=True)
    (plots / "pr_Old_a.png").write_bytes(b"drawn by the earlier run")
    payload = {"settings": _SETTINGS, "groups": pool(carried)}
    text = write_report(payload, carried, quick=True, folder=tmp_path / "report").read_text()
    assert "Carried from the run measured 2026-01-01T00:00:00" in text
    assert payload["groups"]["Old"]["matched"] is None  # its counts were carried, its scores were not
    assert "At matched false alarms" not in text
    assert "![pr_Old_a.png](plots/pr_Old_a.png)" in text  # the earlier plot is linked, not redrawn
    assert (plots / "pr_Old_a.png").read_bytes() == b"drawn by the earlier run"
    ones = payload["groups"]["Old"]["detectors"]["reference: all ones"]
    assert ones["precision"] == 0.1 and ones["recall"] == 1.0  # references from the data's own labels


_SETTINGS = {
    "window_len": 64,
    "false_alarm_budget": 1e-3,
    "threshold_rule": "POT",
    "holdout_fraction": 0.2,
    "score": {"severity_levels": {"warning": 1e-2, "critical": 1e-4}},
    "quick": True,
}


def test_a_variant_is_named_by_trainer_config_keys_and_a_wrong_key_is_refused() -> None:
    settings = parse_settings(
        ["data.spread_floor=1", "score.latent_weight=0.25", "score.calibrate_on=holdout"]
    )
    config = benchmark_config(quick=False, settings=settings)
    assert config.data.spread_floor == 1.0 and config.score.latent_weight == 0.25
    assert config.score.calibrate_on == "holdout"
    assert config.data.on_long_gap == "split"  # the benchmark's own override survives
    for wrong in ("score.no_such_key=1", "latent_weight=1", "score.latent_weight"):
        with pytest.raises(SystemExit, match="expected section.key=value"):
            parse_settings([wrong])
    levels = parse_settings(['score.severity_levels={"warning": 0.01, "emergency": 1e-5}'])
    config = benchmark_config(quick=False, settings=levels)
    assert config.score.severity_levels == {"warning": 0.01, "emergency": 1e-5}
    for wrong in ("score.severity_levels=0.01", 'score.severity_levels={"warning": "high"}'):
        with pytest.raises(SystemExit, match="JSON object of numbers"):
            parse_settings([wrong])


def test_the_matched_threshold_raises_at_most_the_allowed_false_alarms_and_flags_ties_together() -> None:
    scores = np.array([9.0, 8.0, 7.0, 7.0, 6.0, 5.0, 1.0])
    labels = np.array([1, 0, 0, 0, 1, 0, 0], dtype=np.int8)
    flags = metrics.at_most_false_alarms(scores, labels, 1)
    assert flags.tolist() == [True, True, False, False, False, False, False]
    # Two normal rows tie at 7: flagging them would make 3 false alarms, so 2 allowed flag neither.
    assert metrics.at_most_false_alarms(scores, labels, 2).tolist() == flags.tolist()
    flags = metrics.at_most_false_alarms(scores, labels, 3)
    assert flags.tolist() == [True, True, True, True, True, False, False]
    assert metrics.count(flags, labels).fp == 3 and metrics.count(flags, labels).tp == 2
    assert metrics.at_most_false_alarms(scores, labels, 0).tolist() == [True] + [False] * 6
    assert metrics.at_most_false_alarms(scores, labels, 5).all()


def test_fresh_forgets_only_the_series_detectors_and_setting_it_runs(tmp_path: Path) -> None:
    labels = np.zeros(2000, dtype=np.int8)
    one, other = (
        LabelledSeries(n, "G", ["s0"], np.zeros((10, 1)), np.zeros((10, 1)), labels, 0) for n in "ab"
    )
    default, seeded = benchmark_config(False), benchmark_config(False, {"fit.seed": 1.0})
    kept = [
        edgegan_folder(tmp_path, other, default),
        edgegan_folder(tmp_path, one, seeded),
        baseline_folder(tmp_path, one, default),
    ]
    dropped = edgegan_folder(tmp_path, one, default)
    for folder in [*kept, dropped]:
        folder.mkdir(parents=True)
    forget(tmp_path, [one], default, quick=False, ours=True, baselines=False)
    assert not dropped.exists()
    assert all(folder.is_dir() for folder in kept)
