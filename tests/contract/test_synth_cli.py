"""`edge-trainer synth`: seeded synthetic data, reports with evidence, refusals that leave nothing behind."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from trainer.cli import main
from trainer.synthetic.report import memorisation_verdict, privacy_figures


def _synth(bundle: Path, out: Path, *extra: str) -> int:
    return main(["synth", "--bundle", str(bundle), "--rows", "600", "--out", str(out), *extra])


def test_same_seed_same_rows_and_raw_units(pump_bundle: Path, tmp_path: Path) -> None:
    first, again, other = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    assert _synth(pump_bundle, first, "--seed", "3") == 0
    assert _synth(pump_bundle, again, "--seed", "3") == 0
    assert _synth(pump_bundle, other, "--seed", "4") == 0
    rows = np.loadtxt(first, delimiter=",", skiprows=1)
    assert rows.shape == (600, 9)
    np.testing.assert_array_equal(rows[:, 1:], np.loadtxt(again, delimiter=",", skiprows=1)[:, 1:])
    assert not np.allclose(rows[:, 1:], np.loadtxt(other, delimiter=",", skiprows=1)[:, 1:])
    assert np.all(np.diff(rows[:, 0]) > 0)  # timestamps move forward at the bundle's sample period
    real = np.genfromtxt(pump_bundle.parent / "pump.csv", delimiter=",", skip_header=1)[:, 1:]  # ISO ts
    assert np.all(np.abs(rows[:, 1:].mean(0) - real.mean(0)) < 3 * real.std(0))  # raw units, not z-scores


def test_report_has_quality_and_privacy_figures(pump_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "synth.csv"
    assert _synth(pump_bundle, out, "--data", str(pump_bundle.parent / "pump.csv")) == 0
    report = json.loads((tmp_path / "synth.report" / "report.json").read_text())
    privacy, quality = report["privacy"], report["quality"]
    assert 0 <= privacy["closer_to_training_share"] <= 1 and 0 <= privacy["membership_inference_auc"] <= 1
    assert len(quality["ks_per_channel"]) == 8 and 0 <= quality["discriminative_score"] <= 0.5
    markdown = (tmp_path / "synth.report" / "report.md").read_text()
    assert "membership inference AUC" in markdown
    for plot in ("distributions", "correlations", "spectra"):
        assert (
            tmp_path / "synth.report" / f"{plot}.png"
        ).stat().st_size > 1000 and f"({plot}.png)" in markdown


def test_refuse_memorised_writes_nothing(
    pump_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "synth.csv"
    code = _synth(
        pump_bundle,
        out,
        "--data",
        str(pump_bundle.parent / "pump.csv"),
        "--max-closer-to-training",
        "0.0",
        "--refuse-memorised",
    )
    err = capsys.readouterr().err
    if code == 2:  # memorisation by the verdict: refused, nothing written
        assert not out.exists() and "memorisation" in err
    else:  # a threshold of 0 is passed by any share, and a drifted holdout is not blamed on the generator
        report = (tmp_path / "synth.report" / "report.md").read_text()
        assert code == 0 and out.exists() and "drift, not memorisation" in report


@pytest.mark.parametrize("case", ["zero_rows", "unwritable", "no_generator", "parquet_without_pyarrow"])
def test_bad_input_is_one_line_and_nothing_half_written(
    pump_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    bundle, out, rows = pump_bundle, tmp_path / "synth.csv", "600"
    if case == "zero_rows":
        rows = "0"
    elif case == "unwritable":
        out = tmp_path / "missing-folder" / "synth.csv"
    elif case == "no_generator":
        bundle = tmp_path / "bundle"
        shutil.copytree(pump_bundle, bundle)
        (bundle / "generator.onnx").unlink()
    else:
        if importlib.util.find_spec("pyarrow") is not None:
            pytest.skip("pyarrow is installed here, so Parquet output works")
        out = tmp_path / "synth.parquet"
    assert main(["synth", "--bundle", str(bundle), "--rows", rows, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert not out.exists()
    if out.parent.exists():
        assert not list(out.parent.glob(".synth*")), "a temporary file was left behind"


def test_privacy_figures_see_a_generator_that_copies_its_training_data() -> None:
    rng = np.random.default_rng(0)
    train = rng.standard_normal((400, 16, 2)).astype(np.float32)
    holdout = rng.standard_normal((400, 16, 2)).astype(np.float32)
    copies = train[rng.permutation(400)[:300]] + 0.01 * rng.standard_normal((300, 16, 2)).astype(np.float32)
    fresh = rng.standard_normal((300, 16, 2)).astype(np.float32)
    copied = privacy_figures(copies, train, holdout, np.random.default_rng(1))
    honest = privacy_figures(fresh, train, holdout, np.random.default_rng(1))
    assert copied["closer_to_training_share"] > 0.95 and copied["near_copy_rate"] > 0.9
    assert copied["membership_inference_auc"] > 0.8
    assert 0.4 < honest["closer_to_training_share"] < 0.6 and honest["near_copy_rate"] < 0.02
    assert 0.4 < honest["membership_inference_auc"] < 0.6


def test_a_drifted_holdout_is_told_apart_from_memorisation() -> None:
    """A faithful generator lies nearer to training when the held-out tail moved away: that is drift."""
    rng = np.random.default_rng(0)
    train = rng.standard_normal((400, 16, 2)).astype(np.float32)
    drifted = (rng.standard_normal((400, 16, 2)) + 1.0).astype(np.float32)
    steady = rng.standard_normal((400, 16, 2)).astype(np.float32)
    fresh = rng.standard_normal((300, 16, 2)).astype(np.float32)
    copies = train[rng.permutation(400)[:300]] + 0.01 * rng.standard_normal((300, 16, 2)).astype(np.float32)
    after_drift = privacy_figures(fresh, train, drifted, np.random.default_rng(1))
    assert after_drift["closer_to_training_share"] > 0.9 and after_drift["holdout_drift_ratio"] > 1.25
    memorised, text = memorisation_verdict(after_drift, 0.65)
    assert not memorised and text.startswith("drift, not memorisation"), text
    assert 0.8 < privacy_figures(fresh, train, steady, np.random.default_rng(1))["holdout_drift_ratio"] < 1.2
    memorised, text = memorisation_verdict(
        privacy_figures(copies, train, drifted, np.random.default_rng(1)), 0.65
    )
    assert memorised and "near-copies" in text
