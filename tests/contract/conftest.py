"""A tiny bundle trained once per session on a three-channel CSV the fixture writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import correlated_series, write_csv

TINY_CONFIG = {
    "model": {"window_len": 32, "latent_dim": 8, "width": 16},
    "fit": {
        "epochs": 30,
        "encoder_epochs": 15,
        "max_train_windows": 512,
        "seed": 3,
        "lr": 1e-3,
        "critic_lr": 1e-3,
    },
    "quantize": {"calibration_windows": 128},
}


def write_tiny_config(folder: Path, **sections: dict[str, object]) -> Path:
    """The seconds-sized training config, with section overrides."""
    config = {key: dict(value) for key, value in TINY_CONFIG.items()}
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,200 rows of normal operation."""
    return write_csv(tmp_path_factory.mktemp("data") / "normal.csv", correlated_series(1200, seed=11))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A bundle fitted through the real command line."""
    from trainer.cli import main

    folder = tmp_path_factory.mktemp("bundle")
    out = folder / "bundle"
    assert (
        main(["fit", "--data", str(tiny_data), "--out", str(out), "--config", str(write_tiny_config(folder))])
        == 0
    )
    return out
