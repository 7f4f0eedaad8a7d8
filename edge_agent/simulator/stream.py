"""Continuous per-device streams from the bundle's generator, through onnxruntime (no torch).

The generator makes independent windows; laid end to end they would jump at every boundary, which a scorer
rightly calls anomalous. Each next window is therefore picked, among a few candidates, as the one whose start
best continues the previous window's end, and the two are cross-faded over an overlap with equal-power
weights (on deviations from the channel means, so levels and variances are kept through the fade).
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.bundle import (
    GENERATOR,
    GENERATOR_INPUT,
    GENERATOR_OUTPUT,
    Bundle,
    FloorMap,
    LevelProcess,
    LevelRegime,
    second_order_roots,
)
from edge_agent.errors import BackendUnavailable, BundleError
from edge_agent.simulator.vetting import ChunkJudge

CANDIDATES = 8  # windows generated per step to choose the best continuation from
# Latent vectors are drawn with this standard deviation, not 1 (the "truncation trick"): the generator's
# rare far-out samples are what a scorer flags, and a simulator of *normal* operation should not make them.
TRUNCATION = 0.7
# Judged streams are drawn this many chunks ahead of what is published. Why: the shape filter delays the
# shapes by half its taps (127 rows, three chunks, at SMD's 255; 31 of a chunk's 43 at TEP's 63), so the
# rows a chunk's windows score were shaped mostly by earlier draws; drawing the chunk again changed little
# more than its levels and noise, and 4% (SMD) and 12% (TEP) of chunks failed all eight draws.
LOOKAHEAD = 4
MAX_BACKTRACKS = 8  # pending chunks dropped and drawn again before the next chunk is published


RowRange = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]  # per channel (lowest, highest)


class WindowSource(Protocol):
    """What a stream draws its windows from: the bundle's generator graph here, the fit's own generator
    network when the trainer measures what the simulator will make (trainer/level_process.py)."""

    latent_dim: int
    window_len: int
    mean: npt.NDArray[np.float32]
    scale: npt.NDArray[np.float32]
    level_process: LevelProcess | None
    # The training rows' lowest and highest values, raw (None: the walk is unbounded).
    row_range: RowRange | None

    def windows(self, latent: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """[batch, latent] -> [batch, window, channels] in raw units."""
        ...


class GeneratorGraph:
    """A generator graph file alone, one onnxruntime thread: latent vectors to windows in raw units. The
    trainer draws from it too, before the bundle is written (trainer/level_process.py)."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailable(f"onnxruntime is not installed ({err})") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # ORT's exception types are not importable in a stable way
            raise BundleError(f"{path.parent}: cannot load {path.name} ({err})") from None

    def windows(self, latent: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """[batch, latent] -> [batch, window, channels] in raw units."""
        (out,) = self._session.run([GENERATOR_OUTPUT], {GENERATOR_INPUT: latent.astype(np.float32)})
        return np.asarray(out, dtype=np.float32)


class Generator:
    """The bundle's generator graph: latent vectors to windows in raw units."""

    def __init__(self, bundle: Bundle) -> None:
        manifest = bundle.manifest
        self._graph = GeneratorGraph(bundle.model_path(GENERATOR))
        self.latent_dim = manifest.latent_dim
        self.window_len = manifest.window_len
        self.channels = list(manifest.channels)
        self.mean = np.asarray(manifest.normalisation.mean, dtype=np.float32)
        self.scale = np.asarray(manifest.normalisation.scale, dtype=np.float32)
        self.level_process = manifest.level_process
        norm = manifest.normalisation
        self.row_range: RowRange | None = (
            None
            if norm.low is None or norm.high is None
            else (np.asarray(norm.low, dtype=np.float32), np.asarray(norm.high, dtype=np.float32))
        )
        # A generator that draws levels too has each window's own level taken off when the bundle holds a
        # level process: the walk sets levels, and independently drawn windows no longer jump at joins.
        self.strip_levels = manifest.score.window_level == "keep" and self.level_process is not None

    def windows(self, latent: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """[batch, latent] -> [batch, window, channels] in raw units."""
        windows = self._graph.windows(latent)
        return without_window_levels(windows, self.mean) if self.strip_levels else windows


def without_window_levels(
    windows: npt.NDArray[np.float32], mean: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Raw windows [n, W, C] with each window's own per-channel level replaced by the channel means: what
    the stream takes from a generator that draws levels too, before the walk adds its own level."""
    shapes: npt.NDArray[np.float32] = windows - windows.mean(axis=1, keepdims=True) + mean
    return shapes


@dataclass(frozen=True)
class DeviceProfile:
    """What makes one simulated device differ from another of the same model."""

    gain: npt.NDArray[np.float32]  # [channels], around 1
    offset: npt.NDArray[np.float32]  # [channels], raw units

    @classmethod
    def draw(
        cls, rng: np.random.Generator, scale: npt.NDArray[np.float32], variation: float
    ) -> DeviceProfile:
        """Small per-channel gain and offset changes, `variation` as a fraction of the channel's spread."""
        n = len(scale)
        gain = (1 + variation * rng.standard_normal(n)).astype(np.float32)
        offset = (variation * scale * rng.standard_normal(n)).astype(np.float32)
        return cls(gain=gain, offset=offset)


class LevelWalk:
    """Window levels that wander like the training data's: an AR(1) from one chunk's end to the next with
    the bundle's Gaussian as its stationary law, ramped linearly in between so no step shows a seam.

    Where the bundle holds regimes (operating points), the walk is an AR(1) about the current regime's
    mean that moves to another regime as often as the training levels did, and ramps there over one chunk.
    A move does not redraw every channel: the new level combines where the new regime puts levels with
    where the one-Gaussian walk could go in one chunk (a product of the two Gaussians), so channels the
    regimes pin down (a pump's speed, flow, pressure) jump to the new duty point while a channel that
    only happened to differ between regimes in the training data (an inlet temperature on its slow
    daily cycle) carries on from where it was. Inside a regime the walk is at least as persistent as the
    one-Gaussian walk: a regime made of transitions (ramps between duty points) has levels that hardly
    correlate 64 rows apart, and drawing them afresh every chunk made speed jump back and forth by two
    spreads where real ramps move one way. Each channel follows the walk's goal no faster than its
    training levels ever moved (level_process.max_rate): a bearing temperature moved with the duty point
    in one chunk drew the clean simulated fleet's false alarms. The walk's goal turns back where the
    training rows' range ends (`bounds`, normalised; `reflected`).
    """

    def __init__(
        self,
        process: LevelProcess,
        scale: npt.NDArray[np.float32],
        rng: np.random.Generator,
        bounds: RowRange | None = None,
    ) -> None:
        """The first level is drawn from the stationary law, at the training levels' own spread: a Gaussian
        fitted to them has no far-out tail to trim, and trimming it (0.7, as latents are) left synthetic
        streams with about half the real spread. `bounds`: the training rows' range in normalised units
        (`normalised_range`), where the walk turns back (None: unbounded)."""
        regimes = process.regimes or [
            LevelRegime(
                weight=1.0,
                mean=process.mean,
                cholesky=process.cholesky,
                autocorrelation=process.autocorrelation,
            )
        ]
        self.means = [np.asarray(regime.mean, dtype=np.float64) for regime in regimes]
        self.choleskys = [np.asarray(regime.cholesky, dtype=np.float64) for regime in regimes]
        self.autocorrelations = [np.asarray(regime.autocorrelation, dtype=np.float64) for regime in regimes]
        self.transition = np.asarray(process.regime_transition or [[1.0]], dtype=np.float64)
        overall = np.asarray(process.cholesky, dtype=np.float64)
        self.overall_mean = np.asarray(process.mean, dtype=np.float64)
        self.overall_cov = overall @ overall.T
        self.overall_autocorrelation = np.asarray(process.autocorrelation, dtype=np.float64)
        self.lag_rows = process.lag_rows
        self.max_rate = np.asarray(
            process.max_rate if process.max_rate is not None else [np.inf] * len(scale)
        )
        self.scale = scale.astype(np.float64)
        self.rng = rng
        weights = np.asarray([regime.weight for regime in regimes], dtype=np.float64)
        self.regime = int(rng.choice(len(regimes), p=weights / weights.sum()))
        self.level = self.means[self.regime] + self._innovation()
        self.overall_sd = np.sqrt(np.diag(self.overall_cov))
        self.regime_sd = [np.sqrt((factor**2).sum(axis=1)) for factor in self.choleskys]
        self.smooth = [
            (entry.channel, roots)
            for entry in process.smooth_channels or []
            if (roots := second_order_roots(*entry.autocorrelation)) is not None
        ]
        self.smooth_index = np.asarray([channel for channel, _ in self.smooth], dtype=np.int64)
        self.previous_goal: npt.NDArray[np.float64] | None = None  # the goal one step back, for them
        unbounded = np.full(len(scale), np.inf)
        self.low = -unbounded if bounds is None else bounds[0].astype(np.float64)
        self.high = unbounded.copy() if bounds is None else bounds[1].astype(np.float64)
        # Smooth channels keep their cycle: turned back at a bound, an AR(2)'s swing gets a kink that real
        # oscillations lack (the demo's inlet temperature: discriminative score 0.10 -> 0.17-0.23).
        self.low[self.smooth_index], self.high[self.smooth_index] = -np.inf, np.inf
        self.level = reflected(self.level, self.low, self.high)
        self.goal = self.level.copy()  # where the walk is heading; `level` follows it no faster than max_rate

    def _innovation(self) -> npt.NDArray[np.float64]:
        drawn: npt.NDArray[np.float64] = self.choleskys[self.regime] @ self.rng.standard_normal(
            len(self.scale)
        )
        return drawn

    def _next_regime(self, rows: int) -> int:
        """The regime `rows` on: the matrix is over lag_rows, so the chance to stay is scaled to `rows`."""
        row = self.transition[self.regime]
        stay = float(row[self.regime]) ** (rows / self.lag_rows)
        if len(row) == 1 or self.rng.random() < stay:
            return self.regime
        others = row.copy()
        others[self.regime] = 0.0
        if others.sum() <= 0:
            return self.regime
        proposed = int(self.rng.choice(len(row), p=others / others.sum()))
        if self.smooth:
            # The smooth channels move on their own, so a move is accepted by how well the new regime
            # explains where they are (Metropolis): regimes then hold as the data paired them with those
            # channels. The demo's inlet temperature happened to sit 1.7 spreads lower at the low duty
            # point over the training span; with moves blind to it, synthetic streams paired them at
            # random and their speed-to-inlet correlation was off by 0.8.
            gain = self._smooth_log_likelihood(proposed) - self._smooth_log_likelihood(self.regime)
            if np.log(self.rng.random()) >= gain:
                return self.regime
        return proposed

    def _smooth_log_likelihood(self, regime: int) -> float:
        """Log density of the smooth channels' goals under one regime's marginals."""
        channels = self.smooth_index
        sd = np.maximum(self.regime_sd[regime][channels], 1e-9)
        z = (self.goal[channels] - self.means[regime][channels]) / sd
        return float(-0.5 * (z**2).sum() - np.log(sd).sum())

    def _moved_level(self, rows: int) -> npt.NDArray[np.float64]:
        """A level drawn from the new regime's Gaussian times the one-Gaussian walk's step from here."""
        rho = np.power(self.overall_autocorrelation, rows / self.lag_rows)
        carry_on = self.overall_mean + rho * (self.goal - self.overall_mean)
        step = np.sqrt(1 - rho**2)
        step_cov = self.overall_cov * np.outer(step, step)
        regime_cov = self.choleskys[self.regime] @ self.choleskys[self.regime].T
        ridge = 1e-9 * max(float(np.trace(self.overall_cov)), 1e-12) * np.eye(len(rho))
        regime_precision = np.linalg.inv(regime_cov + ridge)
        step_precision = np.linalg.inv(step_cov + ridge)
        cov = np.linalg.inv(regime_precision + step_precision)
        cov = (cov + cov.T) / 2
        mean = cov @ (regime_precision @ self.means[self.regime] + step_precision @ carry_on)
        factor = np.linalg.cholesky(cov + ridge)
        drawn: npt.NDArray[np.float64] = mean + factor @ self.rng.standard_normal(len(rho))
        return drawn

    def _smooth_goals(self, before: npt.NDArray[np.float64], steps: float) -> None:
        """The smooth channels' next goals from their last two, whatever the regimes did: an AR(2) about the
        overall mean, `steps` lags of lag_rows at a time, with innovations that keep the overall spread.

        Why: the demo's inlet temperature (a 3,600-row sine) walked as an AR(1) turned at random every
        chunk and ran at its rate limit, 1.8x the real mean slope, with kinks the real sine lacks; a
        classifier told synthetic windows from real by that channel, and fresh sine rows in its place took
        the discriminative score from 0.23 to 0.16 (three seeds)."""
        previous = self.previous_goal
        for channel, roots in self.smooth:
            a1, a2, share = second_order_step(roots, steps)
            mean, sd = self.overall_mean[channel], self.overall_sd[channel]
            now = before[channel] - mean
            if previous is None:  # the first step: one step back drawn from the process's own law
                lag_one = a1 / (1 - a2)
                back = lag_one * now + np.sqrt(max(1 - lag_one**2, 0.0)) * sd * self.rng.standard_normal()
            else:
                back = previous[channel] - mean
            self.goal[channel] = mean + a1 * now + a2 * back + share * sd * self.rng.standard_normal()
        self.previous_goal = before

    def ramp(self, rows: int) -> npt.NDArray[np.float32]:
        """[rows, channels] raw-unit offsets from the current level to the next one, `rows` on."""
        regime = self._next_regime(rows)
        moved = regime != self.regime
        self.regime = regime
        before = self.goal
        if moved:
            self.goal = self._moved_level(rows)
        else:
            mean = self.means[regime]
            persistence = np.maximum(self.autocorrelations[regime], self.overall_autocorrelation)
            rho = np.power(persistence, rows / self.lag_rows)
            self.goal = mean + rho * (self.goal - mean) + np.sqrt(1 - rho**2) * self._innovation()
        if self.smooth:
            self._smooth_goals(before, rows / self.lag_rows)
        self.goal = reflected(self.goal, self.low, self.high)
        reach = self.max_rate * rows
        target = self.level + np.clip(self.goal - self.level, -reach, reach)
        share = (np.arange(1, rows + 1, dtype=np.float64) / rows)[:, None]
        path = self.level + share * (target - self.level)
        self.level = target
        offsets: npt.NDArray[np.float32] = (path * self.scale).astype(np.float32)
        return offsets


def normalised_range(source: WindowSource) -> RowRange | None:
    """The source's training-row range in normalised units, as the level walk takes it.

    Why the rows' range and not the window levels' (narrower): the demo's outer duty points sit at the
    levels' edge, and turned back there they bunched against it (discriminative score 0.097 -> 0.128 over
    eight seeds; 0.108 at the rows' range, 0.097 unbounded); SMD's streams stay inside either."""
    if source.row_range is None:
        return None
    low, high = source.row_range
    return (low - source.mean) / source.scale, (high - source.mean) / source.scale


def reflected(
    values: npt.NDArray[np.float64], low: npt.NDArray[np.float64], high: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """`values` mirrored back inside [low, high] where they cross a bound (clipped where a mirror crosses
    the other one).

    Why: the walk's Gaussian has tails the data never reached, and a bounded quantity (SMD's memory and
    disk shares sit in [0, 1]) was walked below zero: 8.9% of the rows of SMD machine 2-1's clean
    simulated streams lay beyond the range the agent accepts without a warning (the training range
    widened by a quarter), so every clean device told its user to retrain. Mirrored rather than clipped, a
    level does not stick to the bound."""
    values = np.where(values < low, 2 * low - values, values)
    values = np.where(values > high, 2 * high - values, values)
    result: npt.NDArray[np.float64] = np.clip(values, low, high)
    return result


def second_order_step(roots: tuple[complex, complex], steps: float) -> tuple[float, float, float]:
    """(a1, a2, innovation sd as a share of the stationary sd) of the AR(2) with `roots` per lag, taken
    `steps` lags at a time: the roots raised to that power, which keeps the process's cycle and damping."""
    first, second = roots[0] ** steps, roots[1] ** steps
    a1, a2 = (first + second).real, -(first * second).real
    share = (1 + a2) * ((1 - a2) ** 2 - a1**2) / (1 - a2)
    return a1, a2, float(np.sqrt(max(share, 0.0)))


def filter_rows(rows: npt.NDArray[np.float64], taps: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each channel of rows [T + K - 1, C] through its taps [C, K]: rows [T, C] ('valid' mode)."""
    channels = [np.convolve(rows[:, c], taps[c, ::-1], mode="valid") for c in range(taps.shape[0])]
    filtered: npt.NDArray[np.float64] = np.stack(channels, axis=1)
    return filtered


class ShapeFilter:
    """Per-channel FIR taps [C, K] run over an endless stream chunk by chunk, on the rows' deviations from
    `centre` (the channel means; zero by default): each chunk is filtered with the K - 1 rows before it, so
    chunk joins are filtered like any other rows (at a fixed delay of K // 2).

    Why deviations: the means then pass whatever the taps' gain at zero frequency. Older bundles' taps were
    scaled to a gain of exactly 1 there, which where a channel's filter passed its highest frequencies and
    cut the rest (the demo's inlet temperature) doubled those frequencies' amplitude."""

    def __init__(self, taps: npt.NDArray[np.float64], centre: npt.NDArray[np.float32] | None = None) -> None:
        self.taps = taps
        self.centre = np.zeros(taps.shape[0]) if centre is None else centre.astype(np.float64)
        self._history: npt.NDArray[np.float64] | None = None

    def run(self, chunk: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The filtered chunk, same shape."""
        width = self.taps.shape[1]
        deviations = chunk.astype(np.float64) - self.centre
        if self._history is None:
            self._history = np.repeat(deviations[:1], width - 1, axis=0)
        stream = np.concatenate([self._history, deviations])
        self._history = stream[len(stream) - (width - 1) :]
        return (filter_rows(stream, self.taps) + self.centre).astype(np.float32)


class ColouredNoise:
    """Unit white noise through per-channel taps [C, K] in raw units, the white noises first mixed across
    channels where `mixing` [C, C] is given; endless across chunks: each chunk is filtered with the K - 1
    white rows before it, so the noise has no seam where chunks meet.

    Why the white noises are mixed, not the filtered ones: mixed after its filter, a channel's noise took on
    the other channels' spectra. The demo's bearing temperature, whose fill is a trickle of slow power,
    drew 12% of its noise from the speed's and carried 20x its real power above 0.25 cycles per row. Mixed
    before, every channel keeps its own spectrum, and channels whose fills share a band (TEP's pressures,
    its stripper steam flow and valve) still move together. The bundle's matrix is scaled by each
    channel's fill sd (`noise_mixing` in the trainer); the correlation factor is that scaling taken off.
    """

    def __init__(
        self,
        taps: npt.NDArray[np.float64],
        scale: npt.NDArray[np.float32],
        rng: np.random.Generator,
        mixing: npt.NDArray[np.float64] | None = None,
    ) -> None:
        self.taps, self.scale, self.rng = taps, scale, rng
        self.factor = None if mixing is None else white_mixing(mixing, taps)
        self._history = self._white(taps.shape[1] - 1)

    def _white(self, rows: int) -> npt.NDArray[np.float64]:
        white = self.rng.standard_normal((rows, self.taps.shape[0]))
        mixed: npt.NDArray[np.float64] = white if self.factor is None else white @ self.factor.T
        return mixed

    def draw(self, rows: int) -> npt.NDArray[np.float32]:
        """The next `rows` rows of noise [rows, C]."""
        white = np.concatenate([self._history, self._white(rows)])
        self._history = white[len(white) - (self.taps.shape[1] - 1) :]
        noise: npt.NDArray[np.float32] = (filter_rows(white, self.taps) * self.scale).astype(np.float32)
        return noise


def white_mixing(mixing: npt.NDArray[np.float64], taps: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The bundle's `noise_mixing` (rows scaled to each channel's fill sd, columns to unit variance) as the
    correlation factor [C, C] with unit-norm rows that mixes the channels' white noises."""
    sd = np.sqrt((taps**2).sum(axis=1))
    factor = mixing * sd[None, :] / np.where(sd > 0, sd, 1.0)[:, None]
    norms = np.linalg.norm(factor, axis=1, keepdims=True)
    safe = np.where(norms > 0, norms, 1.0)
    unit: npt.NDArray[np.float64] = np.where(norms > 0, factor / safe, np.eye(len(sd)))
    return unit


class FloorMapping:
    """The bundle's mapped channels (floor and skewed ones) through their monotone maps
    (level_process.floor_maps, piecewise linear in normalised units): distributed as the training rows, in
    the stream's order. Values beyond the streams' measured range go to the training extremes. A channel
    that leaves its floor only in rare isolated readings (`isolated_rate`) sits on its floor, with such
    readings drawn at the training rate apart from the stream. A floor channel sits on its floor no longer
    than the training rows ever did (`longest_floor_run`)."""

    def __init__(
        self,
        maps: list[FloorMap],
        mean: npt.NDArray[np.float32],
        scale: npt.NDArray[np.float32],
        rng: np.random.Generator,
    ) -> None:
        self.maps = [
            (floor.channel, np.asarray(floor.source), np.asarray(floor.target), float(mean[floor.channel]))
            for floor in maps
            if floor.isolated_rate is None
        ]
        self.run_limits = {floor.channel: limit for floor in maps if (limit := _run_limit(floor)) is not None}
        self.runs = dict.fromkeys(self.run_limits, 0)  # rows each limited channel has sat on its floor
        self.isolated = [
            (
                floor.channel,
                _floor_value(floor),
                floor.isolated_rate,
                np.asarray(floor.isolated_values),
                float(mean[floor.channel]),
            )
            for floor in maps
            if floor.isolated_rate is not None and floor.isolated_values
        ]
        self.scale = scale.astype(np.float64)
        # Their own generator, spawned (which draws nothing from the stream's): the rest of a stream is the
        # same draw for draw with or without them, so their effect can be measured paired.
        self.rng = rng.spawn(1)[0] if self.isolated else rng

    def apply(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Raw rows [n, C] -> raw rows [n, C], floor channels mapped, the others as they were."""
        out: npt.NDArray[np.float32] = rows.copy()
        for channel, source, target, mean in self.maps:
            scale = self.scale[channel]
            mapped = np.interp((rows[:, channel] - mean) / scale, source, target)
            if channel in self.run_limits:
                mapped = self._runs_cut(channel, mapped)
            out[:, channel] = mapped * scale + mean
        for channel, floor, rate, values, mean in self.isolated:
            normalised = np.full(len(rows), floor)
            drawn = self.rng.random(len(rows)) < rate
            normalised[drawn] = self.rng.choice(values, size=int(drawn.sum()))
            out[:, channel] = normalised * self.scale[channel] + mean
        return out

    def _runs_cut(self, channel: int, mapped: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Normalised values with no run on the floor longer than the training rows' longest: the reading
        that would go past it takes the nearest off-floor value. The run carries over from chunk to chunk."""
        floor, nearest, longest = self.run_limits[channel]
        run = self.runs[channel]
        for row, on_floor in enumerate(mapped == floor):
            run = run + 1 if on_floor else 0
            if run > longest:
                mapped[row], run = nearest, 0
        self.runs[channel] = run
        return mapped


def _floor_value(floor: FloorMap) -> float:
    """A floor channel's floor, normalised: its map's median target (it sits there in most rows)."""
    return float(np.median(floor.target))


def _run_limit(floor: FloorMap) -> tuple[float, float, int] | None:
    """(the floor, the nearest other value of the map's targets, the longest run) for a floor channel with
    a limit whose map leaves its floor at all; None otherwise."""
    target = np.asarray(floor.target)
    level = _floor_value(floor)
    others = target[target != level]
    if floor.longest_floor_run is None or not len(others):
        return None
    return level, float(others[np.argmin(np.abs(others - level))]), floor.longest_floor_run


def _coloured_noise(
    process: LevelProcess, scale: npt.NDArray[np.float32], rng: np.random.Generator
) -> ColouredNoise | None:
    """The bundle's noise fill, or None for a bundle without one (older ones carry the white `noise_sd`)."""
    if process.noise_filter is None:
        return None
    mixing = None if process.noise_mixing is None else np.asarray(process.noise_mixing, dtype=np.float64)
    return ColouredNoise(np.asarray(process.noise_filter, dtype=np.float64), scale, rng, mixing)


def default_overlap(window: int) -> int:
    """Rows two neighbouring windows are cross-faded over; a chunk of stream is `window` less this."""
    return max(2, window // 3)


class DeviceStream:
    """An endless stream of rows for one device; `next_row` is cheap, generation happens in chunks.

    With a `judge`, every chunk after the first is scored as the agent would score it (the rows before it
    included) and drawn again, up to the judge's attempts, while one of its windows is above the alert
    threshold (edge_agent.simulator.vetting says why); chunks are drawn LOOKAHEAD ahead, and where every
    draw fails unpublished chunks are dropped and drawn again, one more each time in a row."""

    def __init__(
        self,
        generator: WindowSource,
        seed: int,
        variation: float = 0.03,
        overlap: int | None = None,
        truncation: float = TRUNCATION,
        judge: ChunkJudge | None = None,
        bounds: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None = None,
    ) -> None:
        """`bounds`: (low, high) raw values the published rows are mirrored back inside (`reflected`): the
        range the agent takes without an operating-range warning (`OperatingRange`), so a clean device
        never draws one."""
        self.generator = generator
        self.judge = judge
        self.bounds = bounds
        self.truncation = truncation
        self.rng = np.random.default_rng(seed)
        self.profile = DeviceProfile.draw(self.rng, generator.scale, variation)
        window = generator.window_len
        self.overlap = overlap if overlap is not None else default_overlap(window)
        if not 0 < self.overlap < window:
            raise ValueError(f"overlap {self.overlap} must lie between 0 and the window ({window})")
        angle = np.linspace(0.0, np.pi / 2, self.overlap + 2, dtype=np.float32)[1:-1, None]
        self._fade_out, self._fade_in = np.cos(angle), np.sin(angle)
        process = generator.level_process
        self._levels = (
            None
            if process is None
            else LevelWalk(process, generator.scale, self.rng, normalised_range(generator))
        )
        noise_sd = None if process is None else process.noise_sd
        self._noise_sd = None if noise_sd is None else np.asarray(noise_sd) * generator.scale
        self._noise = None if process is None else _coloured_noise(process, generator.scale, self.rng)
        floors = None if process is None else process.floor_maps
        self._floors = None if not floors else FloorMapping(floors, generator.mean, generator.scale, self.rng)
        taps = None if process is None else process.shape_filter
        self._shape_filter = (
            None if taps is None else ShapeFilter(np.asarray(taps, dtype=np.float64), generator.mean)
        )
        self._previous = self._pick(None)
        first = self._previous[: window - self.overlap]
        if self._shape_filter is not None and self._levels is not None:
            # The filter starts on a history of its first row repeated, so its first taps - 1 rows are a
            # transient (with 255 taps, four windows; the demo's first window up to 1.5x as spread as later
            # ones), and 100 short-lived clean devices drew 31 alerts in 5 device-hours on it. The filter is
            # run over that many rows of joined windows first, output dropped, before any level or noise.
            primed = len(self._shape_filter.run(first))
            while primed < self._shape_filter.taps.shape[1] - 1:
                primed += len(self._shape_filter.run(self._next_shapes()))
            first = self._next_shapes()
        self._chunk = self._published(self._with_level(first))
        self._index = 0
        self._tail = self._chunk  # the last published rows, as far back as a window reaches
        # judged, not yet published: (rows, the state before them, kept above the threshold)
        self._pending: deque[tuple[npt.NDArray[np.float32], tuple[object, ...], bool]] = deque()
        self._backtracks = 0
        while judge is not None and len(self._pending) < LOOKAHEAD:
            # Drawn ahead here, before any row is sent: drawn at the first chunk's end instead, a fleet's
            # devices all drew five chunks in the same second (`make demo`'s worst lag: 1.17 s, against
            # 0.18 s judging each chunk alone and 0.50 s drawing ahead here).
            self._extend(judge)

    def _pick(self, previous: npt.NDArray[np.float32] | None) -> npt.NDArray[np.float32]:
        shape = (CANDIDATES, self.generator.latent_dim)
        latent = (self.truncation * self.rng.standard_normal(shape)).astype(np.float32)
        candidates = self.generator.windows(latent)
        if previous is None:
            # The first window starts at the channel means (where the walk's level goes on top), as every
            # later one starts where the last ended. Taken as drawn, a `keep` generator's ramp between duty
            # points began two of the demo's devices at 2,220-2,250 rpm, against a training maximum of
            # 1,853: two false alarms on their first window.
            tail = np.zeros((self.overlap, candidates.shape[2]), dtype=np.float32)
        else:
            tail = (previous[-self.overlap :] - self.generator.mean) / self.generator.scale
        heads = (candidates[:, : self.overlap] - self.generator.mean) / self.generator.scale
        best = int(np.argmin(((heads - tail) ** 2).sum(axis=(1, 2))))
        chosen: npt.NDArray[np.float32] = candidates[best]
        return chosen

    def _next_shapes(self) -> npt.NDArray[np.float32]:
        """The next chunk of joined generator windows, before the filter, the level and the noise."""
        window, overlap = self.generator.window_len, self.overlap
        current = self._pick(self._previous)
        mean = self.generator.mean
        blended = mean + self._fade_out * (self._previous[-overlap:] - mean)
        blended = blended + self._fade_in * (current[:overlap] - mean)
        chunk = np.concatenate([blended, current[overlap : window - overlap]])
        self._previous = current
        return chunk.astype(np.float32)

    def _next_chunk(self) -> npt.NDArray[np.float32]:
        """The next chunk as published: judged, and drawn `LOOKAHEAD` chunks ahead, where there is a judge."""
        if self.judge is None:
            return self._published(self._with_level(self._next_shapes()))
        while len(self._pending) <= LOOKAHEAD:
            self._extend(self.judge)
        chunk, _, above = self._pending.popleft()
        self.judge.counts.chunks += 1
        self.judge.counts.kept_above += above
        self._tail = np.concatenate([self._tail, chunk])[-(self.generator.window_len - 1) :]
        return chunk

    def _extend(self, judge: ChunkJudge) -> None:
        """One more judged chunk at the end of the pending ones; or, where every draw of it fails and the
        backtracking budget allows, the newest pending chunks dropped (one more each time in a row) and drawn
        again from where the oldest of them began."""
        start = self._state()
        best: tuple[float, npt.NDArray[np.float32], tuple[object, ...] | None] | None = None
        for attempt in range(judge.attempts):
            if attempt:
                self._restore(start)
            chunk = self._published(self._with_level(self._next_shapes()))
            worst = judge.worst(self._reach(), chunk)
            if worst <= judge.threshold:
                best = (worst, chunk, None)
                break
            if best is None or worst < best[0]:
                last = attempt == judge.attempts - 1
                best = (worst, chunk, None if last else self._state())
        assert best is not None  # attempts >= 1
        worst, chunk, state = best
        judge.counts.redrawn += attempt
        if worst > judge.threshold and self._pending and self._backtracks < MAX_BACKTRACKS:
            # Each failure in a row reaches one chunk further back: the shape filter delays what a draw
            # makes by half its taps, so the rows that fail may have been drawn chunks before this one.
            self._backtracks += 1
            judge.counts.backtracked += 1
            for _ in range(min(self._backtracks, len(self._pending))):
                _, before, _ = self._pending.pop()
                judge.counts.dropped += 1
            self._restore(before)
            return
        if state is not None:
            self._restore(state)  # the quietest draw was not the last: back to where it left the stream
        self._pending.append((chunk, start, worst > judge.threshold))
        if len(self._pending) > LOOKAHEAD:
            self._backtracks = 0  # a chunk is about to be published: the next one gets a fresh budget

    def _reach(self) -> npt.NDArray[np.float32]:
        """The rows before a new chunk: the published tail and the pending chunks (the judge takes what a
        window reaches)."""
        return np.concatenate([self._tail, *(chunk for chunk, _, _ in self._pending)])

    def _state(self) -> tuple[object, ...]:
        """A copy of everything a chunk's draw moves on, apart from the random generator (shared, so a
        draw again is a new draw)."""
        memo: dict[int, object] = {id(self.rng): self.rng}
        runs = None if self._floors is None else self._floors.runs
        return copy.deepcopy((self._previous, self._shape_filter, self._levels, self._noise, runs), memo)

    def _restore(self, state: tuple[object, ...]) -> None:
        memo: dict[int, object] = {id(self.rng): self.rng}
        self._previous, self._shape_filter, self._levels, self._noise, runs = copy.deepcopy(state, memo)  # type: ignore[assignment]
        if self._floors is not None:
            self._floors.runs = runs  # type: ignore[assignment]

    def _published(self, chunk: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Rows as this device sends them: with its gain and offset."""
        mean = self.generator.mean
        varied = mean + self.profile.gain * (chunk - mean) + self.profile.offset
        if self.bounds is not None:
            varied = reflected(varied.astype(np.float64), *self.bounds)
        published: npt.NDArray[np.float32] = varied.astype(np.float32)
        return published

    def _with_level(self, chunk: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """For a generator that draws shapes only: its shapes, damped where it draws more power than the
        training windows hold (level_process.shape_filter), plus the wandering level, plus the white noise
        its smooth windows lack (level_process.noise_filter, or the white noise_sd of older bundles), and
        floor channels mapped onto the training rows' distribution (level_process.floor_maps)."""
        if self._levels is None:
            return chunk
        if self._shape_filter is not None:
            chunk = self._shape_filter.run(chunk)
        out: npt.NDArray[np.float32] = chunk + self._levels.ramp(len(chunk))
        if self._noise is not None:
            out = out + self._noise.draw(len(out))
        elif self._noise_sd is not None:
            out = (out + self._noise_sd * self.rng.standard_normal(out.shape)).astype(np.float32)
        return out if self._floors is None else self._floors.apply(out)

    def next_row(self) -> npt.NDArray[np.float32]:
        """The next reading's values in raw units, with this device's gain and offset."""
        if self._index == len(self._chunk):
            self._chunk, self._index = self._next_chunk(), 0
        row: npt.NDArray[np.float32] = self._chunk[self._index]  # a view: faults copy before changing it
        self._index += 1
        return row

    def rows(self, count: int) -> npt.NDArray[np.float32]:
        """The next `count` rows as one array."""
        return np.stack([self.next_row() for _ in range(count)]) if count else np.zeros((0, 0), np.float32)
