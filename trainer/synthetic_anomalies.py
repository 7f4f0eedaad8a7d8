"""Anomalies injected into held-out normal windows, to check that the scorer separates them.

Sizes are in units of each channel's training std, so the checks mean the same on every dataset. The
simulator has its own, independent injector (edge_agent.simulate), so the two cannot share a bug.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

Windows = npt.NDArray[np.float32]  # [n, window, channels]
ANOMALY_KINDS = ("spike", "level_shift", "drift", "broken_correlation", "noise_burst", "stuck")


def _spike(w: Windows, scale: npt.NDArray[np.float64], rng: np.random.Generator) -> None:
    for i in range(len(w)):
        c, t = rng.integers(w.shape[2]), rng.integers(w.shape[1] // 2, w.shape[1])
        w[i, t, c] += rng.choice([-1, 1]) * 6 * scale[c]


def _level_shift(w: Windows, scale: npt.NDArray[np.float64], rng: np.random.Generator) -> None:
    for i in range(len(w)):
        c, t = rng.integers(w.shape[2]), rng.integers(w.shape[1] // 4, w.shape[1] // 2)
        w[i, t:, c] += rng.choice([-1, 1]) * 3 * scale[c]


def _drift(w: Windows, scale: npt.NDArray[np.float64], rng: np.random.Generator) -> None:
    """A ramp from an onset in the first half to 3 std at the newest step: slow enough that no single
    step stands out, so only the level (or a reconstruction of the trend) can tell."""
    for i in range(len(w)):
        c, t = rng.integers(w.shape[2]), rng.integers(0, w.shape[1] // 2)
        ramp = np.linspace(0.0, 3.0, w.shape[1] - t) * rng.choice([-1, 1]) * scale[c]
        w[i, t:, c] += ramp.astype(w.dtype)


def _noise_burst(w: Windows, scale: npt.NDArray[np.float64], rng: np.random.Generator) -> None:
    for i in range(len(w)):
        c, t = rng.integers(w.shape[2]), rng.integers(0, w.shape[1] // 2)
        w[i, t:, c] += rng.normal(0, 2 * scale[c], w.shape[1] - t)


def _stuck(w: Windows, scale: npt.NDArray[np.float64], rng: np.random.Generator) -> None:
    del scale
    for i in range(len(w)):
        c, t = rng.integers(w.shape[2]), rng.integers(0, w.shape[1] // 4)
        w[i, t:, c] = w[i, t, c]


INJECTORS: dict[str, Callable[[Windows, npt.NDArray[np.float64], np.random.Generator], None]] = {
    "spike": _spike,
    "level_shift": _level_shift,
    "drift": _drift,
    "noise_burst": _noise_burst,
    "stuck": _stuck,
}


def broken_correlation(windows: Windows, rng: np.random.Generator) -> Windows:
    """One channel per window takes its values from another time: each looks normal, their links break."""
    out: Windows = windows.copy()
    n = len(out)
    for i in range(n):
        c = rng.integers(out.shape[2])
        donor = (i + rng.integers(n // 4 + 1, max(n // 4 + 2, 3 * n // 4))) % n
        out[i, :, c] = windows[donor, :, c]
    return out


def inject(kind: str, windows: Windows, scale: npt.NDArray[np.float64], seed: int) -> Windows:
    """Copies of `windows` with one anomaly of `kind` each."""
    rng = np.random.default_rng(seed)
    if kind == "broken_correlation":
        return broken_correlation(windows, rng)
    out: Windows = windows.copy()
    INJECTORS[kind](out, scale, rng)
    return out


def auroc(normal: npt.NDArray[np.floating], anomalous: npt.NDArray[np.floating]) -> float:
    """Probability that an anomalous score exceeds a normal one (ties count half)."""
    scores = np.concatenate([normal, anomalous])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    # Average ranks over ties so equal scores count half.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = (sums / counts)[inverse]
    n_pos, n_neg = len(anomalous), len(normal)
    return float((ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
