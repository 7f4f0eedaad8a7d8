"""The training data's window levels as a process the simulator can draw from (bundle.json level_process).

Why: a generator fitted with `model.window_level: remove` draws shapes only, so its streams would sit at
the global mean, which tells them from real data at a glance (every marginal too narrow). The levels'
mean, covariance and window-to-window autocorrelation are measured here, on training windows only.

Where the levels cluster (a pump's duty points, a line's products), one Gaussian draws levels between the
clusters that the data never show, and a classifier tells synthetic windows apart by them alone. So the
levels are also fitted as a mixture (as many regimes as predict later levels best) with a regime-to-regime
transition matrix, and the simulator walks between regimes as the training data did.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edge_agent.bundle import LevelProcess, LevelRegime
from edge_agent.simulator.stream import filter_rows
from trainer.windows import Normaliser

_RIDGE = 1e-6  # share of the mean level variance added to the diagonal, so a constant channel factors
MAX_REGIMES = 6  # more operating points than this are rare in one asset's data and cost BIC fits
_FIT_POINTS = 600  # levels the mixture is fitted on, evenly spaced: neighbours of a window-per-row are copies
_REGIME_FLOOR = 0.01  # share of the mean level variance every regime's covariance has at least: a few
# hundred autocorrelated levels make a regime look sharper than it is, and a sharp mixture judges any later
# level slightly off its points as impossible (the forward check below then rejects every mixture)
_REGIME_TOLERANCE = 0.1  # nats per level: the fewest regimes that predict later levels about as well as
# the best count; splitting one operating point in two wins by chance by less than this


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
    cholesky = _cholesky(levels, _mean_variance(levels))
    autocorrelation = _autocorrelation(levels, lag_rows, mean)
    regimes, transition = fit_regimes(levels, lag_rows)
    taps = None if generated is None else shape_filter(normalised, generated)
    filtered = None if generated is None or taps is None else apply_shape_filter(generated, taps)
    return LevelProcess(
        mean=mean.tolist(),
        cholesky=cholesky.tolist(),
        lag_rows=lag_rows,
        autocorrelation=autocorrelation.tolist(),
        noise_sd=None if filtered is None else missing_noise(normalised, filtered).tolist(),
        shape_filter=None if taps is None else taps.tolist(),
        max_rate=level_rate(levels).tolist(),
        regimes=regimes,
        regime_transition=transition,
    )


def shapes_only(windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Normalised windows [n, W, C] without their own per-channel level: what the simulator takes from a
    generator that draws levels too (`window_level: keep`), before it adds the walked level."""
    shapes: npt.NDArray[np.float32] = windows - windows.mean(axis=1, keepdims=True)
    return shapes


def _shape_power(windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Mean periodogram [C, W // 2 + 1] of windows [n, W, C] with each window's level removed (Hann taper)."""
    shapes = windows.astype(np.float64) - windows.mean(axis=1, keepdims=True)
    taper = np.hanning(windows.shape[1])[None, :, None]
    power: npt.NDArray[np.float64] = (np.abs(np.fft.rfft(shapes * taper, axis=1)) ** 2).mean(axis=0).T
    return power


def shape_filter(
    real: npt.NDArray[np.float32], generated: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64] | None:
    """Per channel, odd-length FIR taps [C, taps] that damp the frequencies where the generator's windows
    hold more power than the real ones (gain sqrt(real / generated), never above 1, 1 at zero frequency);
    None when no channel needs damping.

    Why: a GAN spreads its errors as wiggles of similar size on every channel, which on a smooth channel (a
    bearing temperature behind a thermal lag) is a hundred times the real power between 0.03 and 0.5 cycles
    per reading; a classifier and the spectrum figure see it at once. Added noise cannot remove power, a
    filter can; frequencies the generator lacks are the white noise's job (`missing_noise`).
    """
    ratio = _shape_power(real) / np.maximum(_shape_power(generated), 1e-12)
    gain = np.sqrt(np.clip(ratio, 0.0, 1.0))
    gain[:, 0] = 1.0
    if float(gain.min()) > 0.9:  # within 10% everywhere: not worth a filter
        return None
    length = real.shape[1]
    response = np.fft.irfft(gain, n=length, axis=1)  # zero-phase, centred on tap 0 (circular)
    centred = np.roll(response, length // 2, axis=1)[:, 1:]  # odd length, centre tap in the middle
    taps = centred * np.hanning(length + 1)[1:-1][None, :]
    taps /= taps.sum(axis=1, keepdims=True)  # the level passes unchanged
    return taps


def apply_shape_filter(
    windows: npt.NDArray[np.float32], taps: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Windows [n, W, C] run through each channel's taps, same length (edges see the window's own ends)."""
    half = taps.shape[1] // 2
    padded = np.pad(windows.astype(np.float64), ((0, 0), (half, half), (0, 0)), mode="edge")
    return filter_rows(padded, taps).astype(np.float32)


def _mean_variance(levels: npt.NDArray[np.float64]) -> float:
    """The levels' mean per-channel variance: the scale of the ridge that lets a flat channel factor."""
    return float(levels.var(axis=0, ddof=1).mean()) if len(levels) > 1 else 1.0


def _cholesky(levels: npt.NDArray[np.float64], reference_variance: float) -> npt.NDArray[np.float64]:
    """Lower factor of the levels' covariance, ridged by `reference_variance` so a flat channel factors."""
    channels = levels.shape[1]
    cov = np.atleast_2d(np.cov(levels, rowvar=False)) if len(levels) > 1 else np.zeros((channels, channels))
    ridge = _RIDGE * max(reference_variance, 1e-12)
    factor = np.linalg.cholesky(cov + ridge * np.eye(channels))
    return np.asarray(factor, dtype=np.float64)


def _autocorrelation(
    levels: npt.NDArray[np.float64],
    lag_rows: int,
    centre: npt.NDArray[np.float64],
    pairs: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.float64]:
    """Per channel, correlation of a level with the one `lag_rows` on, about `centre`, over the pairs kept
    (all by default); 0 where too few pairs or a flat channel, capped below 1 so the walk still moves."""
    result = np.zeros(levels.shape[1])
    if len(levels) <= lag_rows + 2:
        return result
    now, later = levels[:-lag_rows] - centre, levels[lag_rows:] - centre
    if pairs is not None:
        now, later = now[pairs], later[pairs]
    if len(now) < 3:
        return result
    spread = np.sqrt((now**2).mean(axis=0) * (later**2).mean(axis=0))
    moving = spread > 1e-12
    result[moving] = (now * later).mean(axis=0)[moving] / spread[moving]
    clipped: npt.NDArray[np.float64] = np.clip(result, 0.0, 0.999)
    return clipped


def _regime_count(points: npt.NDArray[np.float64], ridge: float, seed: int) -> int:
    """How many regimes generalise forward in time: mixtures fitted on the first three quarters of the
    levels, judged by the mean log-likelihood of the last quarter. Why not BIC: the levels are a time
    series, and a mixture that splits one operating point by when it ran (the phase of a slow cycle) fits
    the past better while the next hours fall between its parts."""
    from sklearn.mixture import GaussianMixture

    cut = int(len(points) * 0.75)
    earlier, later = points[:cut], points[cut:]
    scores: list[float] = []
    for count in range(1, MAX_REGIMES + 1):
        if count * (points.shape[1] + 2) > len(earlier):
            break
        mixture = GaussianMixture(count, covariance_type="full", reg_covar=ridge, random_state=seed, n_init=2)
        scores.append(float(mixture.fit(earlier).score(later)))
    best = max(scores)
    return 1 + next(i for i, score in enumerate(scores) if score >= best - _REGIME_TOLERANCE)


def fit_regimes(
    levels: npt.NDArray[np.float64], lag_rows: int, seed: int = 0
) -> tuple[list[LevelRegime] | None, list[list[float]] | None]:
    """The levels as a Gaussian mixture, its size chosen by `_regime_count`, and the regime transition
    matrix over `lag_rows`; (None, None) when one regime fits best. Fitted on evenly spaced levels: a
    window per row makes neighbours near-copies, and a few hundred points describe the clusters."""
    from sklearn.mixture import GaussianMixture

    if len(levels) < 4 * lag_rows:
        return None, None
    points = levels[np.linspace(0, len(levels) - 1, min(_FIT_POINTS, len(levels))).astype(int)]
    ridge = _REGIME_FLOOR * max(float(levels.var(axis=0).mean()), 1e-12)
    count = _regime_count(points, ridge, seed)
    if count == 1:
        return None, None
    best = GaussianMixture(count, covariance_type="full", reg_covar=ridge, random_state=seed, n_init=2)
    best.fit(points)
    present, labels = np.unique(best.predict(levels), return_inverse=True)  # a part no level falls in: gone
    count = len(present)
    if count == 1:
        return None, None
    reference_variance = _mean_variance(levels)
    counts = np.zeros((count, count))
    np.add.at(counts, (labels[:-lag_rows], labels[lag_rows:]), 1.0)
    counts += np.eye(count) * 1e-3  # a regime seen only at the end still has a row: it stays
    transition = counts / counts.sum(axis=1, keepdims=True)
    regimes = []
    for regime in range(count):
        members = levels[labels == regime]
        centre = members.mean(axis=0)
        staying = (labels[:-lag_rows] == regime) & (labels[lag_rows:] == regime)
        regimes.append(
            LevelRegime(
                weight=float(len(members) / len(levels)),
                mean=centre.tolist(),
                cholesky=_cholesky(members, reference_variance).tolist(),
                autocorrelation=_autocorrelation(levels, lag_rows, centre, staying).tolist(),
            )
        )
    return regimes, transition.tolist()


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


RATE_QUANTILE = 0.999  # of row-to-row level changes: the fastest the data moved, less one-off glitches


def level_rate(levels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per channel, the 99.9th percentile of |level(t + 1) - level(t)| over windows taken every row.

    Why: regimes and the AR walk say where levels go, not how fast. A pump's bearing temperature follows a
    duty change over minutes behind its thermal lag; a walk that moved it in one chunk drew the clean
    simulated fleet's false alarms. A window's level moves by (x[t + W] - x[t]) / W per row, so this is a
    little slower than the fastest row-level ramp, which errs on the smooth side.
    """
    if len(levels) < 2:
        return np.full(levels.shape[1], np.inf)
    steps = np.abs(np.diff(levels, axis=0))
    rate: npt.NDArray[np.float64] = np.quantile(steps, RATE_QUANTILE, axis=0)
    return rate
