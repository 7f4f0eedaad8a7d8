"""The training data's window levels as a process the simulator can draw from (bundle.json level_process).

Why: a generator fitted with `model.window_level: remove` draws shapes only, so its streams would sit at
the global mean, which tells them from real data at a glance (every marginal too narrow). The levels'
mean, covariance and window-to-window autocorrelation are measured here, on training windows only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edge_agent.bundle import LevelProcess
from trainer.windows import Normaliser

_RIDGE = 1e-6  # share of the mean level variance added to the diagonal, so a constant channel factors


def measure_level_process(
    train: npt.NDArray[np.float32],
    normaliser: Normaliser,
    lag_rows: int,
    generated: npt.NDArray[np.float32] | None = None,
) -> LevelProcess:
    """From raw training windows [n, W, C] taken every row: levels [n, C], and each channel's correlation
    between a window's level and the level `lag_rows` windows (rows) later. With `generated` (normalised
    generator windows [m, W, C], drawn as the simulator draws them), the white noise they lack."""
    normalised = normaliser.apply(train)
    levels = normalised.mean(axis=1).astype(np.float64)
    mean = levels.mean(axis=0)
    cov = np.atleast_2d(np.cov(levels, rowvar=False)) if len(levels) > 1 else np.eye(levels.shape[1])
    cov = cov + _RIDGE * max(float(np.trace(cov)) / len(cov), 1e-12) * np.eye(len(cov))
    cholesky = np.linalg.cholesky(cov)
    autocorrelation = np.zeros(levels.shape[1])
    if len(levels) > lag_rows + 2:
        now, later = levels[:-lag_rows], levels[lag_rows:]
        spread = now.std(axis=0) * later.std(axis=0)
        moving = spread > 1e-12
        products = ((now - now.mean(axis=0)) * (later - later.mean(axis=0))).mean(axis=0)
        autocorrelation[moving] = products[moving] / spread[moving]
    return LevelProcess(
        mean=mean.tolist(),
        cholesky=cholesky.tolist(),
        lag_rows=lag_rows,
        autocorrelation=np.clip(autocorrelation, 0.0, 0.999).tolist(),
        noise_sd=None if generated is None else missing_noise(normalised, generated).tolist(),
    )


def missing_noise(
    real: npt.NDArray[np.float32], generated: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """Per channel, the sd of white noise that brings the generator's step-to-step variance up to the real.

    Why: a GAN draws smooth windows (the critic barely sees sensor noise), so its rows change less from one
    step to the next than real rows do, which a classifier spots at once. White noise of variance v adds 2v
    to the variance of a first difference, so v is half the gap; a channel the generator already makes
    rougher gets none.
    """
    channels = real.shape[2]
    real_steps = np.diff(real.astype(np.float64), axis=1).reshape(-1, channels).var(axis=0)
    generated_steps = np.diff(generated.astype(np.float64), axis=1).reshape(-1, channels).var(axis=0)
    noise: npt.NDArray[np.float64] = np.sqrt(np.maximum(real_steps - generated_steps, 0.0) / 2)
    return noise
