"""`edge-trainer fit` on bad input: one line, exit 2, nothing half-written; and reproducibility."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_agent.bundle import load_bundle
from tests.conftest import TINY_BUNDLE_SECTIONS, TINY_CONFIG, correlated_series, write_csv, write_tiny_config
from trainer.cli import main


def _fit(data: Path, out: Path, config: Path | None = None) -> int:
    argv = ["fit", "--data", str(data), "--out", str(out)]
    return main(argv + (["--config", str(config)] if config else []))


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp / "empty.csv"
    empty.write_text("")
    text_only = tmp / "text.csv"
    text_only.write_text("name,state\npump,ok\nfan,off\n")
    short = write_csv(tmp / "short.csv", correlated_series(20))
    nan_channel = correlated_series(300)
    nan_channel[:, 2] = np.nan
    all_nan = write_csv(tmp / "nan.csv", nan_channel)
    folder = tmp / "folder"
    folder.mkdir()
    write_csv(folder / "a.csv", correlated_series(300), names=["x", "y", "z"])
    write_csv(folder / "b.csv", correlated_series(300), names=["x", "y", "q"])
    return {
        "empty file": (empty, "file is empty"),
        "no numeric column": (text_only, "no numeric column"),
        "fewer rows than one window": (short, "too few rows for window_len=32"),
        "all-NaN channel": (all_nan, "s2 hold no values"),
        "folder disagreeing on columns": (folder, "differ from the first file"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty file",
        "no numeric column",
        "fewer rows than one window",
        "all-NaN channel",
        "folder disagreeing on columns",
    ],
)
def test_bad_data_fails_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    data, message = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    assert _fit(data, out, write_tiny_config(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_unwritable_out_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], normal_csv: Path
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert _fit(normal_csv, blocker / "bundle") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge-trainer: error: --out") and len(err.splitlines()) == 1
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    assert _fit(normal_csv, foreign) == 2
    assert "holds no bundle" in capsys.readouterr().err
    assert (foreign / "cat.jpg").read_bytes() == b"meow"


def test_bad_config_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], normal_csv: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  window: 32\n")
    assert _fit(normal_csv, tmp_path / "out", config) == 2
    assert "model.window: Extra inputs are not permitted" in capsys.readouterr().err


def test_failed_quality_gate_keeps_the_previous_bundle(
    tiny_bundle: Path, tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    import shutil

    shutil.copytree(tiny_bundle, out)
    before = (out / "bundle.json").read_bytes()
    impossible = write_tiny_config(
        tmp_path,
        quantize={"min_rank_correlation": 1.0, "min_decision_agreement": 1.0, "on_int8_failure": "fail"},
    )
    assert _fit(tiny_data, out, impossible) == 2
    assert "INT8 scorer does not match FP32" in capsys.readouterr().err
    assert (out / "bundle.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "tiny.yaml"]


def test_same_data_and_seed_give_the_same_metrics(
    tiny_bundle: Path,
    tiny_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trainer")
    out = tmp_path / "again"
    assert _fit(tiny_data, out, write_tiny_config(tmp_path, **TINY_BUNDLE_SECTIONS)) == 0
    # The fit says how far it is after every epoch, and ends on a table, not a JSON blob.
    messages = [record.getMessage() for record in caplog.records]
    epochs = [m for m in messages if " epoch " in m and "ETA" in m]
    fits = 1 + TINY_BUNDLE_SECTIONS["score"]["cross_fit_folds"]  # type: ignore[operator]
    assert sum(m.startswith("GAN epoch") for m in epochs) == 30 * fits  # the fit, then each fold's
    encoder = [m for m in epochs if m.startswith("encoder epoch")]
    runs = [i for i, m in enumerate(encoder) if m.startswith("encoder epoch 1/15")]
    assert runs[0] == 0 and len(runs) == fits
    for start, end in zip(runs, [*runs[1:], len(encoder)], strict=True):
        assert end - start <= 15
        if end - start == 15:
            assert encoder[end - 1].endswith("ETA 0s")
    if any(end - start < 15 for start, end in zip(runs, [*runs[1:], len(encoder)], strict=True)):
        # early stop: said, and only after encoder_patience epochs without a better loss
        assert any("no better validation loss for 4 epochs" in m for m in messages)
    table = capsys.readouterr().out
    assert table.startswith("bundle edgegan-") and "scorer.int8.onnx" in table and "stuck" in table
    first = json.loads((tiny_bundle / "bundle.json").read_text())
    second = json.loads((out / "bundle.json").read_text())
    assert first["validation"] == second["validation"]
    assert first["thresholds"] == second["thresholds"]
    assert first["score"] == second["score"]


def test_collapsed_generator_fails_the_fit(
    tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Three epochs at a tiny learning rate leave the generator's output near constant: that must not ship.
    config = write_tiny_config(
        tmp_path, fit={"epochs": 3, "encoder_epochs": 1, "lr": 1e-5, "critic_lr": 1e-5}
    )
    assert _fit(tiny_data, tmp_path / "out", config) == 2
    assert "generator collapsed in every epoch" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_demo_command_line_offers_every_option_the_demo_reads() -> None:
    from trainer.cli import _parser

    args = _parser().parse_args(["demo", "--broker-kind", "embedded"])
    # _run_demo reads these; a missing one broke `make demo` at the fleet stage once.
    for name in ("out", "rows", "devices", "rate", "duration", "no_fleet", "broker_kind", "seed", "config"):
        assert hasattr(args, name), name
    assert args.broker_kind == "embedded"
    assert _parser().parse_args(["demo"]).broker_kind == "auto"


def _gappy_csv(path: Path, stretch: int, stretches: int = 3) -> Path:
    """Stretches of `stretch` rows at 1 s, separated by hour-long gaps no interpolation bridges."""
    values = correlated_series(stretch * stretches, seed=31)
    lines = ["ts,s0,s1,s2"]
    for i, row in enumerate(values):
        ts = 1_700_000_000 + i + (i // stretch) * 3600
        lines.append(f"{ts}," + ",".join(f"{v:.6g}" for v in row))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_gap_that_leaves_too_little_for_the_default_window_fits_the_largest_that_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """100-row stretches hold 20 holdout rows: no 64-row window, but 16-row windows fit, and it says so."""
    data = _gappy_csv(tmp_path / "gappy.csv", stretch=100)
    config = {key: dict(value) for key, value in TINY_CONFIG.items()}
    del config["model"]["window_len"]
    config["data"] = {"on_long_gap": "split"}
    path = tmp_path / "no-window.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "bundle"
    assert _fit(data, out, path) == 0
    assert load_bundle(out).manifest.window_len == 16
    assert any("fitting 16-row windows instead" in r.getMessage() for r in caplog.records)


def test_an_explicit_window_that_does_not_fit_names_the_setting_that_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _gappy_csv(tmp_path / "gappy.csv", stretch=100)
    out = tmp_path / "bundle"
    config = write_tiny_config(tmp_path, data={"on_long_gap": "split"})
    assert _fit(data, out, config) == 2
    error = capsys.readouterr().err
    assert "too few rows for window_len=32" in error
    assert "set model.window_len to 16 (the largest that fits) or less" in error
    assert not out.exists()


@pytest.mark.parametrize("command", ["trainer", "agent"])
def test_help_speaks_to_the_user_not_about_the_code(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` is what a new user reads first: it says what the tool does, not how its module is built."""
    from edge_agent.cli import main as agent_main

    entry = main if command == "trainer" else agent_main
    with pytest.raises(SystemExit) as stopped:
        entry(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    assert "usage:" in text
    for internal in ("run_command", "handler", "Thin:", "module"):
        assert internal not in text, internal
