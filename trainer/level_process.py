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

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy import signal, stats

from edge_agent.bundle import FloorMap, LevelProcess, LevelRegime, SmoothChannel, second_order_roots
from edge_agent.simulator.stream import (
    DeviceStream,
    LevelWalk,
    RowRange,
    default_overlap,
    filter_rows,
    normalised_range,
    without_window_levels,
)
from trainer.windows import Normaliser

log = logging.getLogger(__name__)

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
    source: DrawnWindows | None = None,
) -> LevelProcess:
    """From raw training windows [n, W, C] taken every row: levels [n, C], and each channel's correlation
    between a window's level and the level `lag_rows` windows (rows) later. With `source` (the fit's
    generator, without a level process), the filter that damps the power the simulator's streams hold in
    excess and the noise that fills the power they lack, both measured on streams the simulator's own code
    makes from it: its joins between windows lose about a sixth of the windows' power (TEP), which a
    measure on the generator's windows alone does not see."""
    normalised = normaliser.apply(train)
    levels = normalised.mean(axis=1).astype(np.float64)
    mean = levels.mean(axis=0)
    regimes, transition = fit_regimes(levels, lag_rows)
    autocorrelation = _autocorrelation(levels, lag_rows, mean)
    cap = decorrelation_cap(levels, lag_rows, autocorrelation)
    smooth = smooth_channels(levels, lag_rows, mean, autocorrelation, cap)
    if regimes is not None:
        regimes = [
            regime.model_copy(update={"autocorrelation": np.minimum(regime.autocorrelation, cap).tolist()})
            for regime in regimes
        ]
    walk = LevelProcess(
        mean=mean.tolist(),
        cholesky=_cholesky(levels, _mean_variance(levels)).tolist(),
        lag_rows=lag_rows,
        autocorrelation=np.minimum(autocorrelation, cap).tolist(),
        max_rate=level_rate(levels).tolist(),
        regimes=regimes,
        regime_transition=transition,
        smooth_channels=smooth,
    )
    if source is None:
        return walk
    window = source.window_len
    taps = shape_filter(
        normalised[:, 0, :],
        stream_rows(source, None),
        walk_rows(walk, window, normalised_range(source)),
        window,
    )
    if taps is not None:
        walk = walk.model_copy(update={"shape_filter": taps.tolist()})
    rows = normalised[:, 0, :]
    walk = matched_loudness(with_fill(walk, rows, source, window), rows, source, window)
    walk = matched_energy(walk, rows, source, window)
    floors = floor_channels(rows)
    if not floors and not np.any(np.abs(_skewness(rows)) >= SKEW_GAP):
        return walk
    streamed = np.concatenate([stream_rows(source, walk, seed) for seed in range(FLOOR_STREAMS)])
    mapped = sorted(set(floors) | set(skewed_channels(rows, streamed)))
    return walk.model_copy(update={"floor_maps": floor_maps(rows, streamed, mapped)})


@dataclass
class DrawnWindows:
    """The fit's generator as the simulator sees a bundle's (a `WindowSource`), so the trainer can run the
    simulator's own stream code on it before any graph is exported."""

    draw: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]  # latent -> raw [b, W, C]
    latent_dim: int
    window_len: int
    mean: npt.NDArray[np.float32]
    scale: npt.NDArray[np.float32]
    strip_levels: bool  # a generator that draws levels too has its windows' own levels taken off, as there
    level_process: LevelProcess | None = None
    row_range: RowRange | None = None  # the training rows' range, raw: where the walk turns back

    def windows(self, latent: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """[batch, latent] -> [batch, window, channels] in raw units."""
        raw = self.draw(latent)
        return without_window_levels(raw, self.mean) if self.strip_levels else raw


STREAM_ROWS = 12_800  # rows of simulated stream the filter and the noise are measured on (200 windows' worth)


FLOOR_STREAMS = 4  # devices the floor maps are measured on: the walk visits every regime in that many


def stream_rows(source: DrawnWindows, process: LevelProcess | None, seed: int = 0) -> npt.NDArray[np.float32]:
    """Normalised rows [STREAM_ROWS, C] of one device the simulator streams from `source` under `process`
    (None: the generator's windows, joined, at the global mean)."""
    stream = DeviceStream(replace(source, level_process=process), seed=seed, variation=0.0)
    rows: npt.NDArray[np.float32] = ((stream.rows(STREAM_ROWS) - source.mean) / source.scale).astype(
        np.float32
    )
    return rows


def walk_rows(
    process: LevelProcess, window: int, bounds: RowRange | None = None, seed: int = 0
) -> npt.NDArray[np.float32]:
    """Normalised levels [STREAM_ROWS, C] the simulator's walk lays under one device's stream (`bounds`: the
    training rows' normalised range)."""
    ones = np.ones(len(process.mean), dtype=np.float32)
    walk = LevelWalk(process, ones, np.random.default_rng(seed), bounds)
    chunk = window - default_overlap(window)
    path = np.concatenate([walk.ramp(chunk) for _ in range(-(-STREAM_ROWS // chunk))])
    return path[:STREAM_ROWS]


SHAPE_WINDOWS = 4  # the shape filter's length in windows, where the training rows hold 8 segments of it


def shape_filter(
    real: npt.NDArray[np.float32],
    streamed: npt.NDArray[np.float32],
    levels: npt.NDArray[np.float32],
    window: int,
) -> npt.NDArray[np.float64] | None:
    """Per channel, odd-length FIR taps [C, taps] that damp the frequencies where the streamed rows [n, C]
    (the generator's windows joined by the simulator, no level walk) hold more power than the real rows
    leave them once the walk's levels [n, C] have theirs (gain sqrt((real - levels) / streamed), never
    above 1, designed 1 at zero frequency) for the rows' deviations from the channel means (`ShapeFilter`),
    so the taps are not rescaled to pass the means; None when no channel needs damping.

    Why: a GAN spreads its errors as wiggles of similar size on every channel, which on a smooth channel (a
    bearing temperature behind a thermal lag) is a hundred times the real power between 0.03 and 0.5 cycles
    per reading; a classifier and the spectrum figure see it at once. Added noise cannot remove power, a
    filter can; frequencies the generator lacks are the noise's job (`noise_fill`). Why continuous rows and
    segments of several windows: a 64-row window's periodogram leaks a smooth channel's slow power into
    every faster bin, so the real power there read too high and the filter cut too little (the demo's
    bearing temperature kept 100x its real power at 0.03-0.1 cycles per reading). Why the walk's power is
    taken off: the real rows' level moves (a pump's duty changes) are the walk's to make; left in, the
    shapes kept them too and the streams spread 1.1x more inside a window.
    """
    length = _segment(real, streamed, window)
    _, real_power = _power(real, length)
    _, level_power = _power(levels, length)
    ratio = np.maximum(real_power - level_power, 0.0) / np.maximum(_power(streamed, length)[1], 1e-12)
    gain = np.sqrt(np.clip(ratio, 0.0, 1.0))
    gain[:, 0] = 1.0
    if float(gain.min()) > 0.9:  # within 10% everywhere: not worth a filter
        return None
    return _fir_taps(gain, length)  # on deviations from the means (`ShapeFilter`): no gain to rescale


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


def decorrelation_cap(
    levels: npt.NDArray[np.float64], lag_rows: int, autocorrelation: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Per channel, the most `lag_rows` autocorrelation the walk may have: 1 (no cap), except where an AR(1)
    of the measured `autocorrelation` would take longer than a quarter of the levels to decorrelate while
    the levels themselves fall below 1/e within that quarter, at lag L: there exp(-lag_rows / L).

    Why: the walk is an AR(1), which matched at `lag_rows` alone holds a smooth slow channel far too long.
    The demo's inlet temperature is a sine of 3,600 rows: 0.994 at 64 rows, so the walk took about 10,000
    rows to decorrelate where the data take 700, and one 6,000-row stream spread over a fifth of the
    training spread. A classifier told synthetic windows from real by that channel alone (a score of
    0.36, against 0.34 on all eight channels). Channels that decorrelate within the quarter keep their
    measure: capping the demo's duty-point channels too (0.90 to 0.78) made their streams wander inside a
    window 1.1x more.
    """
    count, channels = levels.shape
    cap = np.ones(channels)
    longest = count // 4
    held = autocorrelation > np.exp(-lag_rows / max(longest, 1))  # an AR(1) slower than the quarter
    if longest <= lag_rows or not held.any():
        return cap
    centred = levels - levels.mean(axis=0)
    size = 1 << int(np.ceil(np.log2(2 * count)))
    spectrum = np.fft.rfft(centred, n=size, axis=0)
    products = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=0)[: longest + 1]
    pairs = count - np.arange(longest + 1)
    variance = products[0] / count
    for channel in np.flatnonzero(held & (variance > 1e-12)):
        correlation = products[:, channel] / pairs / variance[channel]
        below = np.flatnonzero(correlation[lag_rows:] < np.exp(-1.0))
        if len(below):
            cap[channel] = np.exp(-lag_rows / (lag_rows + int(below[0])))
    return cap


def smooth_channels(
    levels: npt.NDArray[np.float64],
    lag_rows: int,
    centre: npt.NDArray[np.float64],
    one: npt.NDArray[np.float64],
    cap: npt.NDArray[np.float64],
) -> list[SmoothChannel] | None:
    """The capped channels (slow and smooth, `decorrelation_cap`) whose levels' autocorrelations one and
    two lags on a stationary AR(2) holds: the walk moves them as one, so they keep their slope from one
    step to the next. The cap alone brought such a channel's spread right but left an AR(1) that turns at
    random every step; the other channels stay AR(1)s, since their moves are the regimes'. `one`: the
    levels' autocorrelation `lag_rows` on, uncapped (`_autocorrelation`)."""
    capped = np.flatnonzero(cap < 1)
    if not len(capped):
        return None
    two = _autocorrelation(levels, 2 * lag_rows, centre)
    entries = [
        SmoothChannel(channel=int(channel), autocorrelation=[float(one[channel]), float(two[channel])])
        for channel in capped
        if second_order_roots(float(one[channel]), float(two[channel])) is not None
    ]
    return entries or None


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


def _without_passing(labels: npt.NDArray[np.int64], shortest: int) -> npt.NDArray[np.int64]:
    """The labels with stays shorter than `shortest` that lie between stays of two other regimes (A, then
    short ones, then C) relabelled as passing through: the first half of that stretch as A, the rest as C.
    Short stays that return to where they came from (A, B, A) are visits, and are kept."""
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(labels)]])
    held = [i for i in range(len(starts)) if ends[i] - starts[i] >= shortest or i in (0, len(starts) - 1)]
    out: npt.NDArray[np.int64] = labels.copy()
    for before, after in zip(held, held[1:], strict=False):
        if after - before > 1 and labels[starts[before]] != labels[starts[after]]:
            span_start, span_end = ends[before], starts[after]
            middle = (span_start + span_end) // 2
            out[span_start:middle], out[middle:span_end] = labels[starts[before]], labels[starts[after]]
    return out


def _transitions(labels: npt.NDArray[np.int64], count: int, lag_rows: int) -> list[list[float]]:
    """The regime transition matrix over `lag_rows`, from the labels `lag_rows` apart once stays that only
    pass through are taken off (`_without_passing`).

    Why: levels on their way from one duty point to another pass through the regime between them (the
    demo's pump moves 1,200 -> 1,700 rpm through the 1,450 regime's windows), so the matrix held no direct
    move, and the walk stopped halfway, in a regime it should only pass. A window's level passes through
    for about a window plus the move's own length (104 rows there), so a stay shorter than two windows
    between two other regimes is passing through."""
    counts, direct = np.zeros((count, count)), np.zeros((count, count))
    passed = _without_passing(labels, 2 * lag_rows)
    np.add.at(counts, (passed[:-lag_rows], passed[lag_rows:]), 1.0)
    np.add.at(direct, (labels[:-lag_rows], labels[lag_rows:]), 1.0)
    unseen = counts.sum(axis=1) == 0  # a regime only ever passed through keeps the rows it had
    counts[unseen] = direct[unseen]
    counts += np.eye(count) * 1e-3  # a regime seen only at the end still has a row: it stays
    transition: list[list[float]] = (counts / counts.sum(axis=1, keepdims=True)).tolist()
    return transition


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
    transition = _transitions(labels, count, lag_rows)
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
    return regimes, transition


def noise_fill(
    real: npt.NDArray[np.float32], streamed: npt.NDArray[np.float32], window: int
) -> npt.NDArray[np.float64] | None:
    """Per channel, odd-length FIR taps [C, taps] that shape unit white noise into the power the streamed rows
    [n, C] lack at each frequency against the real rows (real minus streamed, where positive, above the
    level walk's band); None when nothing is lacking.

    Why: white noise matched on the step-to-step variance (what bundles carried before, `noise_sd`) fills
    the fast end only, so the streams still spread less inside a window than the data (TEP: 0.81 against
    0.94 training spreads). In a window of 64 x 52 values that shortfall puts synthetic windows nearer to
    their nearest training window than real windows come, and the near-copy figure read 65% of them as
    copies. Filling the gap bin by bin restores the spread and the roughness together; `shape_filter`
    takes off the excess. Measured on continuous rows in segments of several windows, as the shape filter
    is: a 64-row window's periodogram leaks the slow power of the real rows into faster bins, and the
    fill, read off such windows, gave the demo's channels 5-70x their real power at 0.03-0.1 cycles per
    reading.
    """
    length = _segment(real, streamed, window)
    frequencies, real_power = _power(real, length)
    gap = np.maximum(real_power - _power(streamed, length)[1], 0.0)
    gap[:, frequencies < 1.0 / window] = 0.0  # slower than a window: the level walk's
    gain = np.sqrt(gap / 2.0)  # unit white noise has a one-sided density of 2
    if float(gain.max()) == 0.0:
        return None
    # The taps' own taper smears a narrow gap over its neighbours and loses power: measure what the first
    # taps give and correct each frequency once.
    taps = _fir_taps(gain, length)
    rng = np.random.default_rng(0)
    check = _FILL_CHECK * window
    noise = filter_rows(rng.standard_normal((check + taps.shape[1] - 1, len(gain))), taps)
    _, achieved = _power(noise, length)
    gain *= np.sqrt(np.divide(gap, achieved, out=np.zeros_like(gap), where=achieved > 1e-12))
    return _fir_taps(gain, length)


def with_fill(
    walk: LevelProcess, real: npt.NDArray[np.float32], source: DrawnWindows, window: int
) -> LevelProcess:
    """`walk` with the noise fill (and its channel mixing) measured on the streams it makes from `source`
    without one."""
    walk = walk.model_copy(update={"noise_filter": None, "noise_mixing": None})
    taps = noise_fill(real, stream_rows(source, walk), window)
    if taps is None:
        return walk
    mixing = noise_mixing(real, taps)
    return walk.model_copy(update={"noise_filter": taps.tolist(), "noise_mixing": mixing.tolist()})


LOUDNESS_SLACK = 1.25  # the streams' windows may vary in loudness this much more than the training rows'
SHAPE_GAINS = (0.7, 0.5, 0.35, 0.25)  # the shapes' amplitudes tried, largest first, until that holds


def window_energies(rows: npt.NDArray[np.float32], window: int) -> npt.NDArray[np.float64]:
    """Each consecutive window's energy about its own channel means (its level taken off: the walk's), for
    rows [n, C]."""
    count = len(rows) // window
    windows = rows[: count * window].reshape(count, window, -1).astype(np.float64)
    energy: npt.NDArray[np.float64] = ((windows - windows.mean(axis=1, keepdims=True)) ** 2).sum(axis=(1, 2))
    return energy


def loudness_spread(rows: npt.NDArray[np.float32], window: int) -> float:
    """Coefficient of variation of the windows' energies (`window_energies`)."""
    energy = window_energies(rows, window)
    return float(energy.std() / max(float(energy.mean()), 1e-12))


def matched_loudness(
    walk: LevelProcess, real: npt.NDArray[np.float32], source: DrawnWindows, window: int
) -> LevelProcess:
    """`walk` with the generator's shapes turned down (their gain folded into the shape filter's taps, the
    fill measured again to give back the power they lose) where the streams' windows vary in loudness more
    than LOUDNESS_SLACK times the training rows' do; the largest of SHAPE_GAINS that brings them within.

    Why: TEP's windows are mostly noise, every one about as loud as the next (energy spread 0.095), while
    the generator's shapes vary in loudness from window to window (the streams' spread 0.22). A quiet
    synthetic window lies near every training window, so 14% of them read as near-copies of one, against
    none of the held-out real windows. Turned down to half, the shapes leave the loudness to the fill,
    whose windows vary as little as the data's (0.079): near-copies 0.3%, 1.7% with the fill's channels
    mixed as `noise_mixing` now mixes them.
    """
    target = LOUDNESS_SLACK * loudness_spread(real, window)
    spread = loudness_spread(stream_rows(source, walk), window)
    if spread <= target:
        return walk
    channels = len(walk.mean)
    taps = np.asarray(walk.shape_filter) if walk.shape_filter is not None else np.ones((channels, 1))
    for gain in SHAPE_GAINS:
        turned_down = walk.model_copy(update={"shape_filter": (gain * taps).tolist()})
        quieter = with_fill(turned_down, real, source, window)
        quieter_spread = loudness_spread(stream_rows(source, quieter), window)
        if quieter_spread <= target:
            log.info(
                "simulated windows vary in loudness %.3g against the training rows' %.3g: shapes turned down "
                "to %.2g of their amplitude (%.3g)",
                spread,
                target / LOUDNESS_SLACK,
                gain,
                quieter_spread,
            )
            return quieter
    log.info(
        "simulated windows vary in loudness %.3g against the training rows' %.3g, and turning the shapes "
        "down to %.2g does not bring them within %.2gx: shapes kept",
        spread,
        target / LOUDNESS_SLACK,
        SHAPE_GAINS[-1],
        LOUDNESS_SLACK,
    )
    return walk


ENERGY_TOLERANCE = 0.98  # the streams' median window may be this much quieter than the training rows'
MAX_FILL_GAIN = 1.5  # the most the fill is turned up to get there


def matched_energy(
    walk: LevelProcess, real: npt.NDArray[np.float32], source: DrawnWindows, window: int
) -> LevelProcess:
    """`walk` with its fill turned up, all channels alike, where the streams' median window is quieter than
    the training rows' (`window_energies`, by more than ENERGY_TOLERANCE): by the gain that brings the
    medians together, at most MAX_FILL_GAIN.

    Why: the fill makes up power frequency by frequency above the walk's band, but a window's energy also
    holds power slower than a window, which neither the fill nor the walk's ramps give back in full (TEP's
    slow channels: 0.75 of their real energy inside a window). TEP's streams then sat 6% under the data's
    median window, 7% of their windows under the quietest 1% of real ones, and such a window lies near
    every training window: 1.5% of them read as near-copies, against none of the unseen real windows.
    """
    if walk.noise_filter is None:
        return walk
    target = float(np.median(window_energies(real, window)))
    filled = float(np.median(window_energies(stream_rows(source, walk), window)))
    if filled >= ENERGY_TOLERANCE * target:
        return walk
    bare_walk = walk.model_copy(update={"noise_filter": None, "noise_mixing": None})
    bare = float(np.median(window_energies(stream_rows(source, bare_walk), window)))
    if filled <= bare:
        return walk
    # The fill is independent of the rest, so a window's energy is about the rest's plus gain^2 the fill's.
    gain = float(np.clip(np.sqrt(max(target - bare, 0.0) / (filled - bare)), 1.0, MAX_FILL_GAIN))
    log.info(
        "simulated windows' median energy %.3g against the training rows' %.3g: fill turned up %.3gx",
        filled,
        target,
        gain,
    )
    # `noise_mixing` holds each channel's fill sd in its rows and takes it off in its columns, so a gain
    # common to every channel leaves the mixing as it is.
    return walk.model_copy(update={"noise_filter": (gain * np.asarray(walk.noise_filter)).tolist()})


def _power(
    rows: npt.NDArray[np.floating], length: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(frequencies [F], Welch power [C, F]) of rows [n, C] in segments of `length` rows."""
    frequencies, power = signal.welch(rows.astype(np.float64), axis=0, nperseg=length)
    return frequencies, np.asarray(power, dtype=np.float64).T


def _segment(real: npt.NDArray[np.float32], streamed: npt.NDArray[np.float32], window: int) -> int:
    """Rows per spectral segment (and taps + 1 of the filters): SHAPE_WINDOWS windows where both sets of
    rows hold 8 such segments, fewer where they do not, never under one window."""
    fits = min(len(real), len(streamed)) // (8 * window)
    return window * max(1, min(SHAPE_WINDOWS, fits))


def noise_mixing(rows: npt.NDArray[np.float32], taps: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Lower-triangular [C, C]: the Cholesky factor of how the training rows [n, C] move together in the band
    each pair's fill covers, its rows scaled to each channel's fill sd and its columns to unit variance (the
    bundle's form since bundles first carried it). The simulator takes that scaling off and mixes the
    channels' white noises by the factor before each channel's own taps
    (`edge_agent.simulator.stream.white_mixing`), so each channel keeps its own spectrum.

    How they move together: the real part of the rows' coherency at each frequency, averaged over the
    frequencies with the two fills' gains as weights (`band_correlation`).

    Why: filled independently, the power TEP's pressures lack moved each of them on its own, where in the
    data their steps correlate at 0.94, and the agent alarmed on 8.8% of clean synthetic rows against
    5.7% of an unseen real run. Why not the steps' correlation, as bundles had it before: steps weigh the
    fastest frequencies, and channels can move together slowly and apart quickly. TEP's stripper steam
    flow and its valve (channels 18 and 49) correlate at 0.95 inside a window and their steps at -0.46;
    mixed by the steps, the fill (half their power in a window) moved them apart (0.00-0.12 inside a
    window), and they led the alerts on TEP's clean simulated fleet.
    """
    correlation = band_correlation(rows, taps)
    factor = np.linalg.cholesky(correlation + 1e-6 * np.eye(len(correlation)))
    factor /= np.linalg.norm(factor, axis=1, keepdims=True)
    sd = np.sqrt((taps**2).sum(axis=1))  # each channel's fill noise sd: a filter of unit white noise
    unit = np.divide(1.0, sd, out=np.zeros_like(sd), where=sd > 0)
    mixing: npt.NDArray[np.float64] = sd[:, None] * factor * unit[None, :]
    return mixing


_COHERENCY_SEGMENTS = 256  # Welch segments the coherency is averaged over, at most


def band_correlation(rows: npt.NDArray[np.float32], taps: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """[C, C] correlation matrix: per pair, the rows' coherency (real part, Welch segments as long as the
    taps' design) averaged over frequency, weighted by the product of the two channels' fill gains there;
    made positive semi-definite with a unit diagonal."""
    length = taps.shape[1] + 1
    values = rows.astype(np.float64)
    if len(values) < length:
        values = np.concatenate([values, np.zeros((length - len(values), values.shape[1]))])
    starts = np.arange(0, len(values) - length + 1, length // 2)
    if len(starts) > _COHERENCY_SEGMENTS:  # evenly spaced: memory is segments x frequencies x channels
        starts = starts[np.linspace(0, len(starts) - 1, _COHERENCY_SEGMENTS).astype(int)]
    segments = np.stack([values[start : start + length] for start in starts])
    segments = segments - segments.mean(axis=1, keepdims=True)
    spectra = np.fft.rfft(segments * np.hanning(length)[None, :, None], axis=1)  # [S, F, C]
    cross = np.einsum("sfi,sfj->fij", spectra, spectra.conj()).real  # [F, C, C]
    power = np.sqrt(np.maximum(np.einsum("fii->fi", cross), 0.0))
    scale = power[:, :, None] * power[:, None, :]
    coherency = np.divide(cross, scale, out=np.zeros_like(cross), where=scale > 1e-300)
    gain = np.abs(np.fft.rfft(taps, n=length, axis=1)).T  # [F, C]
    weights = gain[:, :, None] * gain[:, None, :]
    total = weights.sum(axis=0)
    correlation = np.divide(
        (coherency * weights).sum(axis=0), total, out=np.zeros_like(total), where=total > 0
    )
    np.fill_diagonal(correlation, 1.0)
    eigenvalues, vectors = np.linalg.eigh((correlation + correlation.T) / 2)
    nearest = (vectors * np.maximum(eigenvalues, 1e-6)) @ vectors.T
    unit = np.sqrt(np.diag(nearest))
    result: npt.NDArray[np.float64] = nearest / unit[:, None] / unit[None, :]
    return result


_FILL_CHECK = 512  # windows of filtered white noise the fill's power is checked on


def _fir_taps(gain: npt.NDArray[np.float64], length: int) -> npt.NDArray[np.float64]:
    """Zero-phase FIR taps [C, length - 1] whose amplitude response is `gain` [C, length // 2 + 1]."""
    response = np.fft.irfft(gain, n=length, axis=1)
    centred = np.roll(response, length // 2, axis=1)[:, 1:]
    taps: npt.NDArray[np.float64] = centred * np.hanning(length + 1)[1:-1][None, :]
    return taps


FLOOR_SHARE = 0.5  # a channel on one value in at least this share of training rows is a floor channel
# Tails get finer steps: the top percent of a floor channel is where its bursts live, and a channel that
# leaves its floor in fewer rows than the last step holds was given bursts in all of that step's rows (SMD
# machine-2-1's channel 16: 0.02% of training rows off its floor, 0.10% of the synthetic ones, when the
# steps ended at 0.999; 0.07% with these; channels that rare now draw their readings apart, through
# `isolated_readings`). The streams the maps are read from hold 51,200 rows, five above 0.9999.
_TAIL = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005]
FLOOR_LEVELS = np.concatenate([[0.0], _TAIL, np.linspace(0.01, 0.99, 99), 1 - np.asarray(_TAIL[::-1]), [1.0]])


def floor_channels(rows: npt.NDArray[np.float32]) -> list[int]:
    """Channels whose training rows [n, C] hold one value in at least FLOOR_SHARE of them: an idle counter,
    an error rate that is zero but for bursts, a channel that never moved."""
    return [c for c in range(rows.shape[1]) if _commonest(rows[:, c])[1] >= FLOOR_SHARE * len(rows)]


def _commonest(values: npt.NDArray[np.float32]) -> tuple[float, int]:
    """A channel's commonest value (its floor, where it has one) and how many rows hold it."""
    distinct, counts = np.unique(values, return_counts=True)
    most = int(np.argmax(counts))
    return float(distinct[most]), int(counts[most])


SKEW_GAP = 1.0  # skewed at least this much, and this much more (or less) than its streams: mapped


def _skewness(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Per channel [C]; 0 for a constant channel (scipy gives NaN and a warning there)."""
    values = rows.astype(np.float64)
    moving = values.std(axis=0) > 0
    skew = np.zeros(rows.shape[1])
    skew[moving] = stats.skew(values[:, moving], axis=0)
    return skew


def skewed_channels(real: npt.NDArray[np.float32], streamed: npt.NDArray[np.float32]) -> list[int]:
    """Channels whose training rows [n, C] are strongly skewed where the simulator's streams are not.

    Why: server metrics min-max scaled into [0, 1] sit near their bound with a long tail (SMD machine-2-1's
    channel 14: median 0.004, 99th percentile 0.06, maximum 1.0, skewness 15). The walk, the shapes and the
    noise add up to a near-symmetric stream that went below the bound (to -0.10) and never reached the tail,
    and a classifier told such a channel's windows apart on its own (discriminative score 0.50). The demo's
    and TEP's channels are skewed by at most 0.3 and 0.8, and get no map.
    """
    skew = _skewness(real)
    gap = np.abs(skew - _skewness(streamed))
    return [int(c) for c in np.flatnonzero((np.abs(skew) >= SKEW_GAP) & (gap >= SKEW_GAP))]


def floor_maps(
    real: npt.NDArray[np.float32], streamed: npt.NDArray[np.float32], channels: list[int]
) -> list[FloorMap]:
    """For each channel given (floor channels, and skewed ones: `skewed_channels`), the streams' quantiles and
    the training rows' at the same levels: a monotone map (piecewise linear between them) that gives the
    simulated channel the training rows' distribution while keeping the order of its values.

    Why: the walk, the shapes and the noise are Gaussian-ish. An SMD channel that sits on one value in 97%
    of its rows, with rare bursts, came out spread evenly over +-2.3 training spreads. A channel constant in
    training came out as float noise around the constant. Each had a Kolmogorov-Smirnov distance of 0.5 to
    1.0 (mean KS 0.40 over SMD machine-2-1's 38 channels). Not every channel is mapped: on the demo's
    continuous channels, whose training values cluster at duty points, the map stretched the gaps between
    clusters and the clean simulated fleet drew 205 false alarms per device-hour.
    """
    maps = []
    for channel in channels:
        source = np.quantile(streamed[:, channel].astype(np.float64), FLOOR_LEVELS)
        # Strictly rising, for interpolation: a flat stretch of the stream (a constant channel) is spread
        # over a span far below any reading's precision.
        source = source + 1e-9 * max(float(np.abs(source).max()), 1.0) * np.arange(len(source))
        target = np.quantile(real[:, channel].astype(np.float64), FLOOR_LEVELS)
        rate, values = isolated_readings(real[:, channel])
        maps.append(
            FloorMap(
                channel=channel,
                source=source.tolist(),
                target=target.tolist(),
                isolated_rate=rate,
                isolated_values=values,
                longest_floor_run=longest_floor_run(real[:, channel]) if rate is None else None,
            )
        )
    return maps


def longest_floor_run(values: npt.NDArray[np.float32]) -> int | None:
    """The most consecutive rows a floor channel sits on its floor; None for a channel without one.

    Why: SMD machine-2-1's channel 8 leaves its floor in a third of its rows and never sits on it for more
    than 10 training rows (its off-floor readings come at a near-regular pace). Through the map, the
    simulator's channel left it as often but at random, and now and then sat there for 16-20 rows; the
    agent's score, which notices a channel that stops moving, put such windows at 36 against a threshold of
    8.9. They started 9 of the 16 alerts in a probe of judged SMD streams, and the judged clean fleet's
    alerts went from 12 to 6 in 5 device-hours with the limit.
    """
    floor, count = _commonest(values)
    if count < FLOOR_SHARE * len(values):
        return None
    on = np.concatenate([[0], (values == values.dtype.type(floor)).astype(np.int8), [0]])
    edges = np.diff(on)
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    return int(runs.max())


ISOLATED_SHARE = 0.002  # off the floor in at most this share of training rows ...
ISOLATED_RUN = 2.0  # ... in runs this short on average: rare isolated readings, drawn apart from the stream


def isolated_readings(values: npt.NDArray[np.float32]) -> tuple[float | None, list[float] | None]:
    """(share of rows off the floor, those readings) for a channel that leaves its floor only in rare
    isolated readings; (None, None) otherwise.

    Why: SMD machine-2-1's channels 16 and 17 sit on one value in 99.97% of training rows and leave it in 6
    and 4 single readings. Through the map the stream left it twice as often as the data (13.5 against 6
    per 23,693 rows). Each such reading scores 50-60 against a threshold of 9.7 for about 20 windows, so
    they led the clean simulated fleet's alerts, and the simulator's judge could not draw them away.
    """
    off = values != values.dtype.type(_commonest(values)[0])
    share = float(off.mean())
    if share == 0.0 or share > ISOLATED_SHARE:
        return None, None
    edges = np.diff(np.concatenate([[0], off.astype(np.int8), [0]]))
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    if float(runs.mean()) > ISOLATED_RUN:
        return None, None
    return share, values[off].astype(np.float64).tolist()


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
