"""Shared helpers: small synthetic sensor data written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


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
