"""The training levels as the simulator draws them: regimes where the data hold operating points, and the
white noise a generator's smooth windows lack, measured against the training rows."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import signal

from edge_agent.bundle import FloorMap, LevelProcess, SmoothChannel
from edge_agent.simulator.stream import (
    ColouredNoise,
    FloorMapping,
    LevelWalk,
    ShapeFilter,
    filter_rows,
    normalised_range,
)
from trainer.level_process import (
    LOUDNESS_SLACK,
    MAX_FILL_GAIN,
    DrawnWindows,
    fit_regimes,
    floor_channels,
    floor_maps,
    isolated_readings,
    loudness_spread,
    matched_energy,
    matched_loudness,
    measure_level_process,
    noise_fill,
    noise_mixing,
    shape_filter,
    skewed_channels,
    stream_rows,
    window_energies,
    with_fill,
)
from trainer.windows import Normaliser


def _identity(channels: int) -> Normaliser:
    """A normaliser that leaves values as they are."""
    return Normaliser(mean=np.zeros(channels), scale=np.ones(channels), constant_channels=[])


def _ar1(rng: np.random.Generator, phi: float, sd: float, shape: tuple[int, int]) -> np.ndarray:
    """AR(1) noise [n, W]: coloured, so its power is not flat across frequencies."""
    innovations, path = rng.normal(0, sd, shape), np.zeros(shape)
    for step in range(shape[1]):
        path[:, step] = (phi * path[:, step - 1] if step else 0.0) + innovations[:, step]
    return path


def _sines(rng: np.random.Generator, rows: int, channels: int) -> np.ndarray:
    """Smooth rows [rows, channels]: sines of 21 rows and longer (each channel its own period, so their
    steps do not correlate) whose phases drift slowly."""
    drift = np.cumsum(rng.normal(0, 0.02, (rows, channels)), axis=0)
    periods = 21.3 * 1.37 ** np.arange(channels)
    return np.sin(2 * np.pi * np.arange(rows)[:, None] / periods + rng.uniform(0, 6, channels) + drift)


def _window_spread(rows: np.ndarray) -> np.ndarray:
    """Mean spread inside 64-row windows, per channel."""
    return rows[: len(rows) // 64 * 64].reshape(-1, 64, rows.shape[1]).std(axis=1).mean(axis=0)


def test_noise_fill_restores_the_spread_and_the_roughness_the_generator_lacks() -> None:
    """Coloured noise on channel 0, white on channel 1, none on channel 2: the fill's noise brings each
    channel's within-window spread and step-to-step variance to the real rows', and leaves channel 2 be."""
    rng = np.random.default_rng(0)
    rows = 38_400
    smooth = np.repeat(_sines(rng, rows, 1), 3, axis=1)  # the generator's, alike on every channel
    real = smooth.copy()
    real[:, 0] += _ar1(rng, 0.8, 0.3, (1, rows))[0]
    real[:, 1] += rng.normal(0, 0.3, rows)
    taps = noise_fill(real.astype(np.float32), smooth.astype(np.float32), 64)
    assert taps is not None and taps.shape == (3, 255)
    assert np.abs(taps[2]).max() < 1e-9
    white = rng.standard_normal((rows + taps.shape[1] - 1, 3))
    filled = smooth + filter_rows(white, taps)
    for figure in (_window_spread, lambda r: np.diff(r, axis=0).std(axis=0)):
        assert np.allclose(figure(filled), figure(real), rtol=0.05), (figure(filled), figure(real))
    # white noise matched on the steps alone (older bundles' noise_sd) leaves channel 0 short of spread
    step_gap = np.diff(real, axis=0).var(axis=0) - np.diff(smooth, axis=0).var(axis=0)
    white_only = smooth + rng.normal(0, np.sqrt(np.maximum(step_gap, 0) / 2), smooth.shape)
    assert _window_spread(white_only)[0] < 0.97 * _window_spread(real)[0]


def test_a_generator_rougher_than_the_data_gets_no_noise() -> None:
    rng = np.random.default_rng(1)
    rough = rng.normal(0, 1, (3200, 3)).astype(np.float32)
    assert noise_fill(0.5 * rough, rough, 64) is None


def _duty_point_levels(rng: np.random.Generator, rows: int = 6000, dwell: int = 300) -> np.ndarray:
    """Window levels [rows, 2] of an asset that holds one of three duty points for about `dwell` rows."""
    points = np.array([[-1.5, -1.2], [0.0, 0.1], [1.5, 1.3]])
    state, path = 0, []
    for _ in range(rows):
        if rng.random() < 1 / dwell:
            state = int(rng.choice([s for s in range(3) if s != state]))
        path.append(state)
    return points[path] + rng.normal(0, 0.08, (rows, 2))


def test_duty_points_are_fitted_as_regimes_that_hold_as_long_as_the_data_did() -> None:
    rng = np.random.default_rng(2)
    levels = _duty_point_levels(rng)
    regimes, transition = fit_regimes(levels, lag_rows=64)
    assert regimes is not None and transition is not None
    assert len(regimes) == 3, [r.mean for r in regimes]
    means = np.sort(np.asarray([r.mean[0] for r in regimes]))
    np.testing.assert_allclose(means, [-1.5, 0.0, 1.5], atol=0.1)
    stay = np.diag(np.asarray(transition))
    expected_stay = (1 - 1 / 300) ** 64  # about 0.81
    assert np.all(np.abs(stay - expected_stay) < 0.08), stay


def test_a_move_between_the_outer_duty_points_is_a_direct_move_not_a_stay_halfway() -> None:
    """Window levels of a pump that ramps straight from its lowest duty point to its highest pass through
    the middle one's levels for about a window plus the ramp; the regime chain must move straight across,
    as the data did (about half the moves from an outer point here), not through a stay in the middle."""
    rng = np.random.default_rng(3)
    rows, dwell = 12_000, 400
    state, steps = 0, []
    for _ in range(rows + 103):
        if rng.random() < 1 / dwell:
            state = int(rng.choice([s for s in range(3) if s != state]))
        steps.append((-1.5, 0.0, 1.5)[state])
    ramped = np.convolve(steps, np.ones(40) / 40, mode="valid")  # 40-row ramps
    levels = np.convolve(ramped, np.ones(64) / 64, mode="valid")[:, None]  # 64-row window levels
    levels = levels + rng.normal(0, 0.02, levels.shape)
    regimes, transition = fit_regimes(levels, lag_rows=64)
    assert regimes is not None and transition is not None
    means = [regime.mean[0] for regime in regimes]
    low, high, middle = int(np.argmin(means)), int(np.argmax(means)), int(np.argmin(np.abs(means)))
    matrix = np.asarray(transition)
    outer_moves = matrix[low, high] + matrix[high, low]
    outer_to_middle = matrix[low, middle] + matrix[high, middle]
    assert outer_moves > 0.4 * outer_to_middle, (np.round(means, 2), matrix.round(3))


def test_one_cloud_of_levels_is_one_regime() -> None:
    rng = np.random.default_rng(3)
    assert fit_regimes(rng.normal(0, 1, (6000, 2)), lag_rows=64) == (None, None)
    short = _duty_point_levels(rng, rows=100, dwell=20)  # three duty points, but 100 rows
    assert fit_regimes(short, lag_rows=64) == (None, None)  # too short to tell regimes apart


def test_the_walk_stays_on_the_duty_points_where_one_gaussian_fills_the_gaps() -> None:
    """Levels drawn by the simulator's walk sit where the training levels sat; with the regimes dropped,
    the single Gaussian of the same data puts many of them between the duty points."""
    rng = np.random.default_rng(4)
    levels = _duty_point_levels(rng)
    process = measure_level_process(levels[:, None, :].astype(np.float32), _identity(2), lag_rows=64)
    assert process.regimes is not None

    def near_a_duty_point(walked: LevelProcess) -> float:
        walk = LevelWalk(walked, np.ones(2, dtype=np.float32), np.random.default_rng(5))
        ends = np.array([walk.ramp(43)[-1] for _ in range(2000)])
        distance = np.abs(ends[:, :1] - np.array([[-1.5, 0.0, 1.5]])).min(axis=1)
        return float((distance < 0.3).mean())

    truth = float((np.abs(levels[:, :1] - np.array([[-1.5, 0.0, 1.5]])).min(axis=1) < 0.3).mean())
    with_regimes = near_a_duty_point(process)
    single = near_a_duty_point(process.model_copy(update={"regimes": None, "regime_transition": None}))
    assert with_regimes > 0.9 * truth, (with_regimes, truth)
    assert single < 0.7 * truth, (single, truth)


def test_a_move_between_regimes_leaves_a_slow_channel_where_it_was() -> None:
    """A slow cycle that happened to sit at other phases in different duty points (so the regimes' means
    differ on it) must not jump when the walk changes duty point; the duty channel must."""
    rng = np.random.default_rng(6)
    duty = _duty_point_levels(rng, rows=6000, dwell=600)
    slow = np.sin(2 * np.pi * np.arange(6000) / 9000)[:, None] * 1.5  # less than one cycle: confounded
    levels = np.hstack([duty, slow]).astype(np.float32)
    process = measure_level_process(levels[:, None, :], _identity(3), lag_rows=64)
    assert process.regimes is not None
    regime_slow_means = [regime.mean[2] for regime in process.regimes]
    assert max(regime_slow_means) - min(regime_slow_means) > 0.5  # the confound the walk must not copy
    walk = LevelWalk(process, np.ones(3, dtype=np.float32), np.random.default_rng(7))
    duty_jumps, slow_jumps = [], []
    for _ in range(3000):
        before, regime = walk.level.copy(), walk.regime
        walk.ramp(43)
        if walk.regime != regime:
            duty_jumps.append(abs(walk.level[0] - before[0]))
            slow_jumps.append(abs(walk.level[2] - before[2]))
    assert len(duty_jumps) > 20
    assert np.median(duty_jumps) > 1.0, np.median(duty_jumps)  # to another duty point, 1.5 away
    assert np.quantile(slow_jumps, 0.9) < 0.15, np.quantile(slow_jumps, 0.9)


def _lagged_walk(rng: np.random.Generator, rows: int) -> np.ndarray:
    """A smooth channel [rows]: a slow random walk behind a 60-row first-order lag (a bearing temperature)."""
    drive = np.cumsum(rng.normal(0, 0.05, rows))
    out = np.empty(rows)
    out[0] = drive[0]
    for step in range(1, rows):
        out[step] = out[step - 1] + (drive[step] - out[step - 1]) / 60
    return out


def test_the_shape_filter_damps_what_the_generator_draws_too_strongly_and_nothing_else() -> None:
    """A smooth real channel beside a generator that adds faint wiggles at 0.04-0.1 cycles per reading to
    it: the filter brings that band's power down to the real one; a channel drawn right passes unchanged.
    The wiggles sit where a 64-row window's periodogram leaks the channel's slow power; designed on such
    windows (as before), the filter left most of them."""
    rng = np.random.default_rng(8)
    rows = 12_800
    band_noise = signal.sosfiltfilt(
        signal.butter(4, [0.08, 0.2], "bandpass", output="sos"), rng.normal(0, 1, rows)
    )
    real = np.stack([_lagged_walk(rng, rows), rng.normal(0, 1, rows)], axis=1).astype(np.float32)
    streamed = np.stack(
        [_lagged_walk(rng, rows) + 0.05 * band_noise / band_noise.std(), rng.normal(0, 1, rows)], axis=1
    ).astype(np.float32)
    taps = shape_filter(real, streamed, np.zeros_like(real), 64)
    assert taps is not None and taps.shape == (2, 255)
    np.testing.assert_allclose(taps.sum(axis=1), 1.0, atol=0.02)  # slow shapes pass
    half = taps.shape[1] // 2
    filtered = filter_rows(np.pad(streamed.astype(np.float64), ((half, half), (0, 0)), mode="edge"), taps)
    frequencies, real_power = signal.welch(real, axis=0, nperseg=256)
    _, before = signal.welch(streamed, axis=0, nperseg=256)
    _, after = signal.welch(filtered, axis=0, nperseg=256)
    band = (frequencies > 0.045) & (frequencies < 0.095)
    assert before[band, 0].sum() > 20 * real_power[band, 0].sum()
    assert after[band, 0].sum() < 2 * real_power[band, 0].sum(), (
        after[band, 0].sum(),
        real_power[band, 0].sum(),
    )
    assert (
        abs(after[:, 1].sum() / real_power[:, 1].sum() - 1) < 0.2
    )  # the drawn-right channel keeps its noise


def test_a_filter_that_keeps_only_a_channels_fastest_power_does_not_amplify_it() -> None:
    """A slow channel whose slow power is all the walk's (the demo's inlet temperature) gets a filter that
    cuts the generator's slow shapes and keeps its fast ones as drawn. Its taps were scaled to a gain of
    exactly 1 at zero frequency, which there doubled the fast band's amplitude (3.6x its power); the
    filter now runs on deviations from the means, so the means pass without that scaling."""
    rng = np.random.default_rng(9)
    rows = 12_800
    slow = np.sin(2 * np.pi * np.arange(rows) / 3600)[:, None]
    real = (slow + 0.02 * rng.normal(0, 1, (rows, 1))).astype(np.float32)
    streamed = (
        signal.sosfiltfilt(signal.butter(2, 0.02, output="sos"), rng.normal(0, 1, rows))[:, None] * 0.5
        + 0.01 * rng.normal(0, 1, (rows, 1))
    ).astype(np.float32)
    taps = shape_filter(real, streamed, slow.astype(np.float32), 64)
    assert taps is not None
    centre = np.array([5.0], dtype=np.float32)
    filtered = ShapeFilter(taps, centre).run(streamed + centre) - centre
    frequencies, before = signal.welch(streamed[300:, 0], nperseg=256)
    _, after = signal.welch(filtered[300:, 0], nperseg=256)
    fast = frequencies > 0.25
    assert after[fast].sum() < 1.3 * before[fast].sum(), after[fast].sum() / before[fast].sum()
    slow_band = (frequencies > 0.005) & (frequencies < 0.02)
    assert after[slow_band].sum() < 0.05 * before[slow_band].sum()
    flat = ShapeFilter(taps, centre).run(np.full((500, 1), 5.0, dtype=np.float32))
    np.testing.assert_allclose(flat, 5.0, rtol=1e-6)  # the mean passes exactly


def test_the_stream_filter_joins_chunks_as_if_the_stream_were_one_array() -> None:
    rng = np.random.default_rng(9)
    taps = rng.uniform(0, 1, (3, 7))
    taps /= taps.sum(axis=1, keepdims=True)
    stream = rng.normal(0, 1, (200, 3)).astype(np.float32)
    chunked = ShapeFilter(taps)
    out = np.concatenate([chunked.run(stream[i : i + 43]) for i in range(0, 200, 43)])
    whole = ShapeFilter(taps).run(stream)
    np.testing.assert_allclose(out, whole, atol=1e-5)
    expected = sum(taps[:, k] * stream[k : k + 100] for k in range(7))  # row 6 on: no start padding
    np.testing.assert_allclose(whole[6:106], expected, atol=1e-5)


def test_the_walk_moves_no_channel_faster_than_its_training_levels_did() -> None:
    """A slow channel (a bearing temperature behind its thermal lag) follows a duty change over several
    chunks, as in the data, while the walk still reaches every duty point."""
    rng = np.random.default_rng(10)
    duty = _duty_point_levels(rng, rows=6000, dwell=400)
    lagged = np.zeros(len(duty))
    for t in range(1, len(duty)):
        lagged[t] = lagged[t - 1] + (duty[t, 0] - lagged[t - 1]) / 150  # a slow follower of the duty point
    levels = np.hstack([duty, lagged[:, None]]).astype(np.float32)
    process = measure_level_process(levels[:, None, :], _identity(3), lag_rows=64)
    assert process.max_rate is not None
    assert process.max_rate[2] < 0.2 * process.max_rate[0]  # the follower is the slow one
    walk = LevelWalk(process, np.ones(3, dtype=np.float32), np.random.default_rng(11))
    paths = np.concatenate([walk.ramp(43) for _ in range(2000)])
    fastest = np.abs(np.diff(paths, axis=0)).max(axis=0)
    assert np.all(fastest <= np.asarray(process.max_rate) * 1.0001), (fastest, process.max_rate)
    ends = paths[42::43, 0]
    assert np.abs(ends[:, None] - np.array([[-1.5, 0.0, 1.5]])).min(axis=1).mean() < 0.3


def test_the_walk_turns_back_where_the_training_rows_ended_but_a_smooth_channel_keeps_its_cycle() -> None:
    """Levels of a share that sits in [0, 1]: uniform on it, so the Gaussian the walk draws from reaches
    below 0 and above 1 (1.7 of its spreads from the mean). The walk stays inside the range the training
    rows covered (here each row its own window) and still reaches both ends; a smooth (second-order)
    channel is not bounded."""
    rng = np.random.default_rng(4)
    share = np.repeat(rng.uniform(0, 1, 200), 64)  # one level per 64 rows
    levels = np.stack([share, rng.normal(0, 1, len(share))], axis=1).astype(np.float32)
    process = measure_level_process(levels[:, None, :], _identity(2), lag_rows=64)
    source = replace(_white_source(0.5), row_range=(levels.min(axis=0), levels.max(axis=0)))
    bounds = normalised_range(source)
    assert bounds is not None
    np.testing.assert_allclose([bounds[0][0], bounds[1][0]], [share.min(), share.max()], atol=1e-6)
    paths = {}
    for name, walked in (("bounded", bounds), ("unbounded", None)):
        walk = LevelWalk(process, np.ones(2, dtype=np.float32), np.random.default_rng(5), walked)
        paths[name] = np.concatenate([walk.ramp(43) for _ in range(3000)])[:, 0]
    low, high = bounds[0][0], bounds[1][0]
    outside = (paths["unbounded"] < low) | (paths["unbounded"] > high)
    assert outside.mean() > 0.02  # what the bound is for
    assert paths["bounded"].min() >= low and paths["bounded"].max() <= high
    assert paths["bounded"].min() < low + 0.05 and paths["bounded"].max() > high - 0.05
    smooth = process.model_copy(
        update={"smooth_channels": [SmoothChannel(channel=0, autocorrelation=[0.9, 0.7])]}
    )
    walk = LevelWalk(smooth, np.ones(2, dtype=np.float32), np.random.default_rng(5), bounds)
    assert np.isinf(walk.low[0]) and np.isinf(walk.high[0]) and np.isfinite(walk.low[1])


def test_floor_channels_are_mapped_onto_their_floor_and_bursts_and_other_channels_are_left_alone() -> None:
    """A counter idle on one value in 95% of rows with rare bursts, and a channel constant in training, come
    out of a Gaussian stream as the training rows have them; a continuous channel gets no map."""
    rng = np.random.default_rng(11)
    rows = 8000
    floor = np.where(rng.random(rows) < 0.95, -0.2, rng.uniform(1.0, 5.0, rows))
    real = np.stack([floor, np.zeros(rows), rng.normal(0, 1, rows)], axis=1).astype(np.float32)
    assert floor_channels(real) == [0, 1]
    streamed = rng.normal(0, 1, (20_000, 3)).astype(np.float32)  # what the walk and the noise draw
    maps = floor_maps(real, streamed, [0, 1])
    mapping = FloorMapping(maps, mean=np.zeros(3, np.float32), scale=np.ones(3, np.float32), rng=rng)
    drawn = rng.normal(0, 1, (20_000, 3)).astype(np.float32)
    out = mapping.apply(drawn)
    on_floor = float(np.mean(out[:, 0] == np.float32(-0.2)))
    assert abs(on_floor - 0.95) < 0.01, on_floor
    assert out[:, 0].max() <= 5.0 and np.quantile(out[:, 0], 0.99) > 1.0  # bursts as far as the data's
    assert (out[:, 1] == 0).all()  # a constant channel stays exactly constant
    np.testing.assert_array_equal(out[:, 2], drawn[:, 2])


def test_rare_single_readings_off_the_floor_come_at_their_rate_apart_from_the_stream() -> None:
    """A channel off its floor in 0.02% of training rows, one reading at a time (like SMD machine-2-1's
    channels 16 and 17), sits on its floor and gets such readings at that rate, wherever the stream is:
    through the map they came twice as often as in the data, and the simulator's judge could not draw
    them away."""
    rng = np.random.default_rng(12)
    rows = 40_000
    real = np.where(rng.random(rows) < 0.9998, 0.0, rng.uniform(0.5, 1.0, rows))[:, None].astype(np.float32)
    share = float(np.mean(real != 0))
    assert 0 < share < 0.0005
    streamed = rng.normal(0, 1, (51_200, 1)).astype(np.float32)  # as many rows as the fit reads the map on
    (floor,) = floor_maps(real, streamed, [0])
    assert floor.isolated_rate == pytest.approx(share) and floor.isolated_values is not None
    assert sorted(floor.isolated_values) == sorted(real[real != 0].astype(np.float64).tolist())
    mapping = FloorMapping([floor], mean=np.zeros(1, np.float32), scale=np.ones(1, np.float32), rng=rng)
    for stream in (rng.normal(0, 1, (400_000, 1)), np.full((400_000, 1), 3.0)):  # anywhere, or stuck high
        out = mapping.apply(stream.astype(np.float32))
        off_floor = out[:, 0] != 0
        assert 0.6 * share < float(np.mean(off_floor)) < 1.4 * share, (np.mean(off_floor), share)
        assert set(np.unique(out[off_floor, 0])) <= set(np.unique(real[real != 0]))


def test_a_channel_off_its_floor_in_runs_or_often_keeps_its_map() -> None:
    rng = np.random.default_rng(13)
    runs = np.repeat(np.where(rng.random(4000) < 0.9995, 0.0, 1.0), 10)  # bursts 10 readings long
    often = np.where(rng.random(40_000) < 0.99, 0.0, 1.0)  # off in 1% of rows
    assert isolated_readings(runs.astype(np.float32)) == (None, None)
    assert isolated_readings(often.astype(np.float32)) == (None, None)


def test_a_tampered_floor_map_or_noise_mixing_is_refused() -> None:
    good = FloorMap(channel=0, source=[-1.0, 0.0, 1.0], target=[0.0, 0.0, 2.0])
    with pytest.raises(ValidationError, match="rise"):
        FloorMap(channel=0, source=[0.0, 0.0, 1.0], target=[0.0, 0.0, 2.0])
    with pytest.raises(ValidationError, match="finite"):
        FloorMap(channel=0, source=[0.0, float("nan")], target=[0.0, 1.0])
    with pytest.raises(ValidationError, match="come together"):
        FloorMap(channel=0, source=[-1.0, 0.0, 1.0], target=[0.0, 0.0, 2.0], isolated_rate=0.001)
    with pytest.raises(ValidationError, match="finite"):
        FloorMap(
            channel=0, source=[-1.0, 0.0], target=[0.0, 0.0], isolated_rate=0.001, isolated_values=[math.inf]
        )
    walk = {"mean": [0, 0], "cholesky": [[1, 0], [0, 1]], "lag_rows": 64, "autocorrelation": [0, 0]}
    assert LevelProcess.model_validate({**walk, "floor_maps": [good.model_dump()]}).floor_maps == [good]
    with pytest.raises(ValidationError, match="below 2"):
        LevelProcess.model_validate({**walk, "floor_maps": [{**good.model_dump(), "channel": 2}]})
    with pytest.raises(ValidationError, match="noise_mixing must be 2 x 2"):
        LevelProcess.model_validate({**walk, "noise_filter": [[1.0], [1.0]], "noise_mixing": [[1.0, 0.0]]})


def test_the_fill_moves_channels_together_as_the_training_rows_do_where_it_fills() -> None:
    """Two channels whose fast noise is shared in the data get filled noise that moves together as that
    noise does; an independent channel stays independent; each channel keeps its own noise variance."""
    rng = np.random.default_rng(12)
    rows = 38_400
    smooth = _sines(rng, rows, 3)  # each channel's slow shape on its own
    shared, own = rng.normal(0, 0.3, rows), rng.normal(0, 0.3, rows)
    real = (smooth + np.stack([shared, 2 * shared, own], axis=1)).astype(np.float32)
    taps = noise_fill(real, smooth.astype(np.float32), 64)
    assert taps is not None
    mixing = noise_mixing(real[:2560], taps)
    mixed = ColouredNoise(taps, np.ones(3, np.float32), rng, mixing).draw(40_000)
    alone = ColouredNoise(taps, np.ones(3, np.float32), rng).draw(40_000)
    together = np.corrcoef(mixed, rowvar=False)
    assert together[0, 1] > 0.9, together
    assert abs(together[0, 2]) < 0.1 and abs(together[1, 2]) < 0.1, together
    assert abs(np.corrcoef(alone, rowvar=False)[0, 1]) < 0.1
    np.testing.assert_allclose(mixed.std(axis=0), alone.std(axis=0), rtol=0.05)


def _within_windows(rows: np.ndarray) -> np.ndarray:
    """Rows less their 64-row window's mean: how channels move inside a window."""
    windows = rows[: len(rows) // 64 * 64].reshape(-1, 64, rows.shape[1])
    return (windows - windows.mean(axis=1, keepdims=True)).reshape(-1, rows.shape[1])


def test_channels_that_move_together_slowly_and_apart_quickly_are_filled_together() -> None:
    """A flow and its valve (TEP's stripper steam, channels 18 and 49): a shared slow swing inside each
    window, fast noise of opposite sign, so their steps anticorrelate while the rows correlate. The fill
    moves them together inside a window as the data do (one correlation for every frequency, so less
    strongly); mixed by the steps' correlation, it moved them apart."""
    rng = np.random.default_rng(15)
    rows = 25_600
    slow = np.zeros(rows)
    for row in range(1, rows):
        slow[row] = 0.9 * slow[row - 1] + 0.3 * rng.standard_normal()
    fast = rng.normal(0, 0.4, rows)
    real = np.stack([slow + fast, slow - fast], axis=1).astype(np.float32)
    assert np.corrcoef(np.diff(real, axis=0), rowvar=False)[0, 1] < -0.2
    real_within = np.corrcoef(_within_windows(real), rowvar=False)[0, 1]
    assert real_within > 0.3
    taps = noise_fill(real, rng.normal(0, 0.01, real.shape).astype(np.float32), 64)
    assert taps is not None
    fill = ColouredNoise(taps, np.ones(2, np.float32), rng, noise_mixing(real, taps)).draw(25_600)
    assert np.corrcoef(_within_windows(fill), rowvar=False)[0, 1] > 0.5 * real_within


def test_strongly_skewed_channels_are_mapped_and_near_symmetric_ones_are_not() -> None:
    """A server metric scaled into [0, 1] sits near its bound with a long tail; the Gaussian-ish stream does
    not, so the channel gets a map. A mildly skewed channel (a pump's, TEP's) does not."""
    rng = np.random.default_rng(5)
    rows = 8000
    tail = rng.lognormal(-4.0, 1.0, rows)  # skewness far above 1, never below 0
    mild = rng.gamma(40.0, 1.0, rows)  # skewness about 0.3
    real = np.stack([tail, mild, rng.normal(0, 1, rows)], axis=1).astype(np.float32)
    real = (real - real.mean(0)) / real.std(0)
    streamed = rng.normal(0, 1, (20_000, 3)).astype(np.float32)
    assert skewed_channels(real, streamed) == [0]
    assert skewed_channels(real, real) == []  # a stream skewed like the data needs no map
    (mapped,) = floor_maps(real, streamed, skewed_channels(real, streamed))
    mapping = FloorMapping([mapped], mean=np.zeros(3, np.float32), scale=np.ones(3, np.float32), rng=rng)
    out = mapping.apply(streamed)
    assert out[:, 0].min() >= real[:, 0].min() - 1e-6  # nothing below the bound
    assert abs(float(np.quantile(out[:, 0], 0.99)) - float(np.quantile(real[:, 0], 0.99))) < 0.2


def test_a_smooth_slow_channel_keeps_its_slope_and_spreads_like_the_data() -> None:
    """A sine of 3,600 rows over 4,800 (the demo's inlet temperature) is 0.994 correlated 64 rows on. An
    AR(1) matched there held a stream near where it started; capped (by when the data decorrelate) it
    spread wider but turned at random every step. Walked as an AR(2) matched at one and two lags, it keeps
    its slope from one step to the next and spreads over most of the data's spread. An AR(1) channel beside
    it stays an AR(1) with its own persistence."""
    rng = np.random.default_rng(8)
    rows = 4800
    sine = 1.4 * np.sin(2 * np.pi * np.arange(rows) / 3600)
    ar = np.zeros(rows)
    for step in range(1, rows):
        ar[step] = 0.99 * ar[step - 1] + rng.normal(0, 0.14)
    levels = np.stack([sine, ar], axis=1).astype(np.float32)
    process = measure_level_process(levels[:, None, :], _identity(2), lag_rows=64)
    assert abs(process.autocorrelation[1] - 0.99**64) < 0.1, process.autocorrelation
    assert [entry.channel for entry in process.smooth_channels or []] == [0], process.smooth_channels
    capped_ar1 = process.model_copy(update={"smooth_channels": None})

    def spread_and_turns(walked: LevelProcess) -> tuple[float, float]:
        """Mean over streams of the sine channel's spread, and of the correlation of one chunk's level
        change with the next's (1: the slope carries on; about 0.5 or less: it turns at random)."""
        spreads, turns = [], []
        for seed in range(8):
            walk = LevelWalk(walked, np.ones(2, dtype=np.float32), np.random.default_rng(seed))
            path = np.concatenate([walk.ramp(43) for _ in range(rows // 43)])[:, 0]
            changes = np.diff(path[42::43])
            spreads.append(path.std())
            turns.append(np.corrcoef(changes[:-1], changes[1:])[0, 1])
        return float(np.mean(spreads)), float(np.mean(turns))

    smooth_spread, smooth_turns = spread_and_turns(process)
    ar1_spread, ar1_turns = spread_and_turns(capped_ar1)
    assert smooth_turns > 0.9 > 0.7 > ar1_turns, (smooth_turns, ar1_turns)
    assert smooth_spread > 0.7 * sine.std(), (smooth_spread, sine.std())
    assert smooth_spread > 1.2 * ar1_spread, (smooth_spread, ar1_spread)


def test_autocorrelations_no_smooth_ar2_holds_are_refused() -> None:
    """The bundle refuses a smooth channel whose autocorrelations would make the walk flip sign every step
    or grow without bound, and takes one a stationary smooth AR(2) holds."""
    assert SmoothChannel(channel=0, autocorrelation=[0.994, 0.977]).channel == 0
    for bad in ([0.5, 0.9], [0.9, 0.999], [1.0, 0.9], [float("nan"), 0.5]):
        with pytest.raises(ValidationError, match="no stationary smooth AR"):
            SmoothChannel(channel=0, autocorrelation=bad)


def test_mixed_fill_keeps_each_channels_own_spectrum() -> None:
    """A slow channel whose steps correlate with a fast one's: mixing the filtered noises (as streams did
    before) gave the slow channel the fast one's high frequencies; mixing the white noises keeps its own."""
    rng = np.random.default_rng(13)
    taps = np.zeros((2, 31))
    taps[0, 15] = 1.0  # white: power at every frequency
    taps[1] = np.hanning(31) / np.hanning(31).sum() * 3  # slow: a smooth low-pass
    sd = np.sqrt((taps**2).sum(axis=1))
    factor = np.array([[1.0, 0.0], [0.6, 0.8]])
    mixing = sd[:, None] * factor / sd[None, :]
    slow = ColouredNoise(taps, np.ones(2, np.float32), rng, mixing).draw(40_000)[:, 1]
    alone = ColouredNoise(taps, np.ones(2, np.float32), rng).draw(40_000)[:, 1]
    white = rng.standard_normal((40_000 + 30, 2))
    filtered = filter_rows(white, taps) / sd
    mixed_after = (filtered @ factor.T * sd)[:, 1]

    def fast_share(noise: np.ndarray) -> float:
        power = np.abs(np.fft.rfft(noise)) ** 2
        return float(power[len(power) // 2 :].sum() / power.sum())

    assert fast_share(slow) < 2 * fast_share(alone) + 1e-4, (fast_share(slow), fast_share(alone))
    assert fast_share(mixed_after) > 10 * fast_share(alone), (fast_share(mixed_after), fast_share(alone))
    np.testing.assert_allclose(slow.std(), alone.std(), rtol=0.05)


def _loudness_source(steady: bool) -> DrawnWindows:
    """Windows of eight sines per channel (3-10 cycles a window, phases from the latent) whose loudness
    varies from window to window (lognormal, sd 0.5) unless `steady`."""
    window = 64
    steps = np.arange(window)[None, :, None, None]
    cycles = (np.arange(3, 11) / window)[None, None, :, None]

    def draw(latent: np.ndarray) -> np.ndarray:
        loudness = np.ones(len(latent)) if steady else np.exp(0.5 * latent[:, 0])
        phases = 3 * latent[:, 1:17].reshape(-1, 1, 8, 2)
        shapes = 0.5 * np.sin(2 * np.pi * cycles * steps + phases).sum(axis=2)
        return (loudness[:, None, None] * shapes).astype(np.float32)

    zeros = np.zeros(2, dtype=np.float32)
    return DrawnWindows(draw, 17, window, zeros, np.ones(2, dtype=np.float32), strip_levels=False)


def test_windows_that_vary_in_loudness_more_than_the_data_get_their_shapes_turned_down() -> None:
    """Real rows: white noise, every window about as loud as the next. A generator whose shapes vary in
    loudness gets them turned down and the fill gives the power back; one whose shapes are steady keeps
    them."""
    rng = np.random.default_rng(21)
    rows = 12_800
    real = rng.normal(0, 1, (rows, 2)).astype(np.float32)
    levels = rng.normal(0, 0.01, (rows, 1, 2)).astype(np.float32)
    walk = measure_level_process(levels, _identity(2), lag_rows=64)
    real_spread = loudness_spread(real, 64)
    varied = _loudness_source(steady=False)
    filled = with_fill(walk, real, varied, 64)
    assert loudness_spread(stream_rows(varied, filled), 64) > LOUDNESS_SLACK * real_spread
    matched = matched_loudness(filled, real, varied, 64)
    assert matched.shape_filter is not None
    assert np.asarray(matched.shape_filter).sum(axis=1).max() < 0.75  # the shapes' gain, no longer 1
    streamed = stream_rows(varied, matched)
    assert loudness_spread(streamed, 64) <= LOUDNESS_SLACK * real_spread
    assert np.allclose(_window_spread(streamed), _window_spread(real), rtol=0.15)
    steady = _loudness_source(steady=True)
    kept = with_fill(walk, real, steady, 64)
    assert matched_loudness(kept, real, steady, 64) == kept


def _white_source(sd: float) -> DrawnWindows:
    """Windows of white noise with standard deviation `sd` on two channels, seeded by the latent."""

    def draw(latent: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(int(abs(float(latent[0, 0])) * 1e6))
        return (sd * rng.standard_normal((len(latent), 64, 2))).astype(np.float32)

    zeros = np.zeros(2, dtype=np.float32)
    return DrawnWindows(draw, 8, 64, zeros, np.ones(2, dtype=np.float32), strip_levels=False)


def test_streams_quieter_than_the_data_inside_a_window_get_the_fill_turned_up() -> None:
    """Real rows: white noise on slow sines (periods of 150 and 190 rows). The fill makes up power above one
    window's frequency only, so streams of a white generator lack the sines' share of each window; the fill
    is turned up, one gain for every channel, until the median window is as loud as the data's. Where the
    data hold no slow power, the fill is left as measured."""
    rng = np.random.default_rng(5)
    rows = 12_800
    slow = np.sin(2 * np.pi * np.arange(rows)[:, None] / np.array([150.0, 190.0]) + rng.uniform(0, 6, 2))
    white = rng.normal(0, 1, (rows, 2))
    levels = rng.normal(0, 0.01, (rows, 1, 2)).astype(np.float32)
    walk = measure_level_process(levels, _identity(2), lag_rows=64)
    source = _white_source(0.5)

    def median_energy(values: np.ndarray) -> float:
        return float(np.median(window_energies(values.astype(np.float32), 64)))

    real = (white + slow).astype(np.float32)
    filled = with_fill(walk, real, source, 64)
    assert median_energy(stream_rows(source, filled)) < 0.9 * median_energy(real)
    matched = matched_energy(filled, real, source, 64)
    np.testing.assert_allclose(median_energy(stream_rows(source, matched)), median_energy(real), rtol=0.05)
    gains = np.linalg.norm(matched.noise_filter, axis=1) / np.linalg.norm(filled.noise_filter, axis=1)
    assert 1.0 < gains[0] <= MAX_FILL_GAIN and gains[1] == pytest.approx(gains[0])
    assert matched.noise_mixing == filled.noise_mixing
    plain = white.astype(np.float32)
    kept = with_fill(walk, plain, source, 64)
    assert matched_energy(kept, plain, source, 64) == kept


def _longest_run(on: np.ndarray) -> int:
    edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def test_a_floor_channel_never_sits_on_its_floor_longer_than_the_training_rows_did() -> None:
    """Off-floor readings at a near-regular pace (1-8 rows apart, like SMD machine-2-1's channel 8) through
    a map fed by a slow stream: left alone, the map sits on the floor for long stretches, which the agent's
    score reads as a stuck sensor; with the limit, no run on the floor (chunk joins included) is longer
    than the training rows' longest, and the readings that break one are values the data hold."""
    rng = np.random.default_rng(14)
    gaps = rng.integers(1, 9, 12_000)
    real = np.zeros(int(gaps.sum()) + 1, dtype=np.float32)
    real[np.cumsum(gaps)[:-1]] = rng.choice([0.5, 1.0, 8.0], len(gaps) - 1, p=[0.6, 0.35, 0.05])
    longest = _longest_run(real == 0)
    assert longest <= 7
    slow = np.zeros(60_000)
    for row in range(1, len(slow)):
        slow[row] = 0.98 * slow[row - 1] + 0.2 * rng.standard_normal()
    streamed = slow[:, None].astype(np.float32)
    (floor,) = floor_maps(real[:, None], streamed, [0])
    assert floor.longest_floor_run == longest
    unit = {"mean": np.zeros(1, np.float32), "scale": np.ones(1, np.float32), "rng": rng}
    limited = FloorMapping([floor], **unit)
    free = FloorMapping([floor.model_copy(update={"longest_floor_run": None})], **unit)
    chunks = np.array_split(streamed, len(streamed) // 43)
    out = np.concatenate([limited.apply(chunk) for chunk in chunks])[:, 0]
    unlimited = free.apply(streamed)[:, 0]
    assert _longest_run(out == 0) <= longest
    assert _longest_run(unlimited == 0) > 3 * longest
    broken = out != unlimited
    assert broken.any() and (unlimited[broken] == 0).all() and (out[broken] == 0.5).all()
