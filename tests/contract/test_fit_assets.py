"""`edge-trainer fit-assets`: one verified bundle per asset from parallel workers, failures reported."""

from __future__ import annotations

import json
from pathlib import Path

from edge_agent.bundle import load_bundle
from tests.conftest import correlated_series, write_csv, write_tiny_config
from trainer.cli import main


def test_every_asset_gets_its_own_bundle_and_a_bad_one_is_reported_not_fatal(tmp_path: Path) -> None:
    data = tmp_path / "assets"
    data.mkdir()
    write_csv(data / "pump-a.csv", correlated_series(900, seed=1))
    # two good assets keep both workers busy; a third added a fit and tested nothing new
    (data / "fan_c").mkdir()
    write_csv(data / "fan_c" / "part1.csv", correlated_series(450, seed=3) * 1.5)
    write_csv(data / "fan_c" / "part2.csv", correlated_series(450, seed=4) * 1.5)
    write_csv(data / "broken.csv", correlated_series(20, seed=5))  # far too short for one window
    out = tmp_path / "bundles"
    config = write_tiny_config(tmp_path)
    argv = ["fit-assets", "--data", str(data), "--out", str(out), "--workers", "2", "--config", str(config)]
    assert main(argv) == 1  # one asset failed
    summary = {row["asset"]: row for row in json.loads((out / "summary.json").read_text())}
    assert list(summary) == ["broken", "fan_c", "pump-a"]
    assert summary["broken"]["status"] == "failed" and "too few rows" in summary["broken"]["error"]
    for asset in ("fan_c", "pump-a"):
        assert summary[asset]["status"] == "ok"
        bundle = load_bundle(out / asset)  # verified: hashes, schema, shapes
        assert summary[asset]["threshold_int8"] == bundle.threshold_for("scorer.int8.onnx").value
    files = load_bundle(out / "fan_c").manifest.provenance.data_files
    assert [Path(f).name for f in files] == ["part1.csv", "part2.csv"]
    # Each asset is its own model: different data, different normalisation.
    scale_a = load_bundle(out / "pump-a").manifest.normalisation.scale
    scale_c = load_bundle(out / "fan_c").manifest.normalisation.scale
    assert scale_a != scale_c
    # Workers fit with the settings the user gave, not every default frozen in: the choice stays theirs.
    auto = load_bundle(out / "pump-a").manifest.validation["auto"]
    assert isinstance(auto, dict) and auto["fixed_by_user"] == []
    assert "| broken | failed |" in (out / "summary.md").read_text()


def test_a_data_path_that_is_not_a_folder_is_one_line_exit_2(tmp_path: Path, capsys: object) -> None:
    missing = tmp_path / "nope"
    assert main(["fit-assets", "--data", str(missing), "--out", str(tmp_path / "o")]) == 2
