"""`edge-agent score`: the daemon's pipeline over a CSV, one output row per input row."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.backends import open_scorer
from edge_agent.bundle import load_bundle
from edge_agent.cli import main
from tests.conftest import correlated_series, write_csv


def _score(bundle: Path, data: Path, out: Path, *extra: str) -> int:
    """`edge-agent score` through its own entry point."""
    return main(["score", "--bundle", str(bundle), "--data", str(data), "--out", str(out), *extra])


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_scores_every_row_and_flags_the_injected_fault(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = correlated_series(700, seed=21)
    std = values.std(axis=0)
    values[400:500, 1] += 4 * std[1]  # a 100-row level shift on one channel
    values[200, 0] = np.nan  # a reading the daemon would reject
    data = write_csv(tmp_path / "live.csv", values)
    out = tmp_path / "scored.csv"
    assert _score(tiny_bundle, data, out) == 0
    summary = json.loads(capsys.readouterr().out)
    rows = _read(out)
    assert len(rows) == summary["rows"] == 700
    assert all(r["score"] == "" for r in rows[:31]) and rows[31]["score"] != ""  # window_len = 32
    assert rows[200]["rejected"] == "non_numeric" and rows[200]["score"] == ""
    assert summary["rejected"] == {"non_numeric": 1}
    flagged = np.array([int(r["anomaly"]) for r in rows])
    assert flagged[420:500].mean() > 0.8, "the level shift must be flagged"
    assert flagged[40:390].mean() < 0.05, "normal stretches stay quiet"
    assert summary["alerts"] >= 1
    # Flagged rows name the channels behind their window, largest first; the shifted one leads.
    tops = [r["top_channels"] for r in rows[420:500] if r["anomaly"] == "1"]
    assert tops and all(top.count(":") == 3 for top in tops)
    assert np.mean([top.split(":")[0] == "s1" for top in tops]) > 0.8
    assert all(r["top_channels"] == "" for r in rows if r["anomaly"] == "0")


def test_readings_outside_the_trained_range_are_named_once(
    tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    values = correlated_series(300, seed=22)
    values[150:, 2] += 20 * values[:, 2].std()  # another operating point for one channel
    data = write_csv(tmp_path / "moved.csv", values)
    assert _score(tiny_bundle, data, tmp_path / "scored.csv") == 0
    warnings = [r.getMessage() for r in caplog.records if "outside the range" in r.getMessage()]
    assert len(warnings) == 1 and "s2 " in warnings[0] and "s0 " not in warnings[0]


def test_numeric_columns_the_bundle_does_not_know_are_named_once_not_scored(
    tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="edge_agent")
    values = np.column_stack([correlated_series(100, seed=23), np.zeros(100), np.arange(100.0)])
    data = write_csv(tmp_path / "export.csv", values, names=["s0", "s1", "s2", "label", "batch"])
    assert _score(tiny_bundle, data, tmp_path / "scored.csv") == 0
    said = [r.getMessage() for r in caplog.records if "not in the bundle" in r.getMessage()]
    assert len(said) == 1 and "label, batch" in said[0], said


def test_scores_match_the_backend_on_the_same_windows(tiny_bundle: Path, tmp_path: Path) -> None:
    values = correlated_series(100, seed=4)
    data = write_csv(tmp_path / "d.csv", values)
    out = tmp_path / "o.csv"
    assert _score(tiny_bundle, data, out, "--precision", "fp32") == 0
    scored = np.array([float(r["score"]) for r in _read(out)[31:]])
    windows = np.stack([values[i : i + 32] for i in range(0, 69)]).astype(np.float32)
    direct = open_scorer(load_bundle(tiny_bundle), precision="fp32").score(windows).scores
    # Batches of other sizes take other kernels: FP32 agrees to a few parts in 10^4, not bit for bit.
    np.testing.assert_allclose(scored, direct, rtol=1e-3)


def test_missing_channel_and_bad_bundle_are_one_line_errors(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "d.csv", correlated_series(50)[:, :2])
    assert _score(tiny_bundle, data, tmp_path / "o.csv") == 2
    assert "s2 not found" in capsys.readouterr().err
    assert _score(tmp_path, data, tmp_path / "o.csv") == 2
    assert "no bundle.json" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_a_stricter_severity_level_alerts_on_a_subset_and_an_unknown_level_is_a_clear_error(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = load_bundle(tiny_bundle).manifest
    for threshold in manifest.thresholds.values():  # the trainer's default levels, calibrated at fit time
        critical, warning = threshold.levels["critical"], threshold.levels["warning"]
        assert critical.false_alarm_budget == 1e-4 and critical.value >= threshold.value
        assert warning.false_alarm_budget == 1e-2 and warning.value <= threshold.value
    values = correlated_series(700, seed=22)
    values[400:500, 1] += 6 * values[:, 1].std()
    data = write_csv(tmp_path / "live.csv", values)
    flags = {}
    for level in ("warning", None, "critical"):
        out = tmp_path / f"scored-{level}.csv"
        assert _score(tiny_bundle, data, out, *(["--level", level] if level else [])) == 0
        flags[level] = np.array([int(r["anomaly"]) for r in _read(out)])
    capsys.readouterr()
    assert flags["critical"][430:500].mean() > 0.5, "a large shift reaches the critical level"
    assert np.all(flags["critical"] <= flags[None]), "every critical alert row is also an alert row"
    assert np.all(flags[None] <= flags["warning"]), "and every alert row a warning row"
    out = tmp_path / "never.csv"
    assert _score(tiny_bundle, data, out, "--level", "urgent") != 0
    assert "no severity level 'urgent'" in capsys.readouterr().err
    assert not out.exists()


def test_an_absurd_but_finite_reading_saturates_the_score_and_every_number_stays_finite(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    """1e30 in one cell: the graph clips its inputs, so scores stay finite, and the row is flagged."""
    values = correlated_series(200, seed=23)
    values[120, 0] = 1e30
    data = write_csv(tmp_path / "absurd.csv", values)
    out = tmp_path / "scored.csv"
    assert _score(tiny_bundle, data, out) == 0
    rows = _read(out)
    scores = np.array([float(r["score"]) for r in rows if r["score"]])
    assert np.isfinite(scores).all()
    assert float(rows[125]["score"]) > 1e3 and rows[125 + 3]["anomaly"] == "1"


def test_non_finite_backend_scores_are_saturated_before_anything_publishes_them() -> None:
    from edge_agent.pipeline import SATURATED_SCORE, finite

    raw = np.array([1.0, np.inf, np.nan, -np.inf], dtype=np.float32)
    np.testing.assert_allclose(finite(raw), [1.0, SATURATED_SCORE, SATURATED_SCORE, 0.0], rtol=1e-6)


def test_validate_config_checks_the_level_against_the_bundle(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --validate-config` refuses what `run` would refuse at start: a severity level the bundle lacks."""
    config = tmp_path / "agent.yaml"
    config.write_text(f"bundle: {tiny_bundle}\ndecision:\n  level: critical\n")
    assert main(["run", "--config", str(config), "--validate-config"]) == 0
    assert json.loads(capsys.readouterr().out)["bundles_checked"] == [str(tiny_bundle)]
    config.write_text(f"bundle: {tiny_bundle}\ndecision:\n  level: catastrophic\n")
    assert main(["run", "--config", str(config), "--validate-config"]) == 2
    assert "no severity level 'catastrophic'" in capsys.readouterr().err
