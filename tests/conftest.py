"""Shared helpers: small synthetic sensor data written by the tests themselves."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from filelock import FileLock


def correlated_series(rows: int, seed: int = 0) -> np.ndarray:
    """Three linked channels: a slow drive signal, its scaled copy and its negated square, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    drive = np.sin(2 * np.pi * t / 50.0) + 0.5 * np.sin(2 * np.pi * t / 17.0)
    a = 10 + 2 * drive + rng.normal(0, 0.05, rows)
    b = 3 * drive + rng.normal(0, 0.05, rows)
    c = -(drive**2) + rng.normal(0, 0.05, rows)
    return np.stack([a, b, c], axis=1)


def write_csv(
    path: Path,
    values: np.ndarray,
    names: list[str] | None = None,
    sep: str = ",",
    timestamps: bool = True,
    header: bool = True,
) -> Path:
    """Write values with an epoch-seconds timestamp column."""
    names = names or [f"s{i}" for i in range(values.shape[1])]
    lines = []
    if header:
        lines.append(sep.join((["timestamp"] if timestamps else []) + names))
    for i, row in enumerate(values):
        cells = [f"{v:.6g}" if np.isfinite(v) else "" for v in row]
        lines.append(sep.join(([str(1_700_000_000 + i)] if timestamps else []) + cells))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def normal_csv(tmp_path: Path) -> Path:
    """A 600-row, three-channel CSV of normal operation."""
    return write_csv(tmp_path / "normal.csv", correlated_series(600))


TINY_CONFIG = {
    # window_level pinned: the level choice doubles a fit; tests of that choice drop the key (free_level)
    "model": {"window_len": 32, "latent_dim": 8, "width": 16, "window_level": "remove"},
    "fit": {
        "epochs": 30,
        "encoder_epochs": 15,
        "max_train_windows": 512,
        "seed": 3,
        "lr": 1e-3,
        "critic_lr": 1e-3,
        # one thread: the suite runs two workers on two cores (pytest-xdist), and two-thread fits side by
        # side spin-wait on each other
        "threads": 1,
        # every other window: half the training steps, and no simulator measurements (level_process, about a
        # quarter of a tiny fit); bundles that feed the simulator set SIMULATED_SECTIONS
        "train_stride": 2,
    },
    "quantize": {"calibration_windows": 128},
    # cross-fitting pinned off: each fold costs about a fit; tiny_bundle turns it on (TINY_BUNDLE_SECTIONS)
    "score": {"cross_fit_folds": 0},
}


# A window at every row, as a default fit takes them: the bundle then carries the simulator's level process.
SIMULATED_SECTIONS: dict[str, dict[str, object]] = {"fit": {"train_stride": 1}}

# tiny_bundle's own settings: a default fit's windows and two cross-fit folds (the default fits four; each
# costs about a fit)
TINY_BUNDLE_SECTIONS: dict[str, dict[str, object]] = {**SIMULATED_SECTIONS, "score": {"cross_fit_folds": 2}}


def write_tiny_config(folder: Path, free_level: bool = False, **sections: dict[str, object]) -> Path:
    """The seconds-sized training config, with section overrides; `free_level` leaves model.window_level
    to the fit's automatic choice."""
    config = {key: dict(value) for key, value in TINY_CONFIG.items()}
    if free_level:
        del config["model"]["window_level"]
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """`build(folder)` once per test run, by whichever pytest-xdist worker asks first; the other waits for it
    and shares the result (tests treat these as read-only). Each worker fitted its own session bundles
    before, so the tiny bundle (about 50 s) and the pump bundle (about 35 s) were fitted twice."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build(factory.mktemp(name))
    root = factory.getbasetemp().parent / "shared"  # this run's folder above the workers' own
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():  # a build that failed left no mark: the next worker to ask tries again
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            done.write_text(str(build(folder).relative_to(folder)))
    return folder / done.read_text()


def _fit(data: Path, out: Path, config: Path) -> Path:
    """A bundle fitted through the real command line."""
    from trainer.cli import main

    assert main(["fit", "--data", str(data), "--out", str(out), "--config", str(config)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,200 rows of normal operation."""
    return built_once(
        tmp_path_factory,
        "data",
        lambda folder: write_csv(folder / "normal.csv", correlated_series(1200, seed=11)),
    )


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """A bundle fitted through the real command line; its short holdout (209 windows) is cross-fitted, as a
    default fit's would be."""

    def build(folder: Path) -> Path:
        return _fit(tiny_data, folder / "bundle", write_tiny_config(folder, **TINY_BUNDLE_SECTIONS))

    return built_once(tmp_path_factory, "bundle", build)


def _pump_bundle(folder: Path, **model: object) -> Path:
    """The demo's pump data, 3,000 rows, fitted with a wider tiny config."""
    from trainer.demo.pump_data import write_pump_csv

    data = write_pump_csv(folder / "pump.csv", rows=3000, seed=5)
    config = write_tiny_config(folder, model={"width": 32, "latent_dim": 16, **model}, **SIMULATED_SECTIONS)
    return _fit(data, folder / "bundle", config)


@pytest.fixture(scope="session")
def pump_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small bundle on the demo's noisy 8-channel pump data, whose generator makes convincing streams.

    The tiny bundle's periodic, nearly noise-free test signal is hard for a GAN trained in seconds; the
    simulator tests need a generator whose clean output the scorer accepts, as a real bundle's would be.
    """
    return built_once(tmp_path_factory, "pump", _pump_bundle)


@pytest.fixture(scope="session")
def pump_bundle_keep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pump_bundle` with window_level keep: a generator that draws levels as well as shapes."""
    return built_once(tmp_path_factory, "pump_keep", lambda folder: _pump_bundle(folder, window_level="keep"))
