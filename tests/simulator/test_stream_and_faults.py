"""Generated streams are continuous, reproducible and normal; every fault does what its name says."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edge_agent.bundle import SCORER_INT8, FloorMap, LevelProcess, load_bundle
from edge_agent.config import BackendConfig
from edge_agent.decision import DecisionConfig
from edge_agent.operating_range import OperatingRange
from edge_agent.pipeline import open_pipeline
from edge_agent.simulator import faults
from edge_agent.simulator.fleet import Fleet
from edge_agent.simulator.scenario import Scenario
from edge_agent.simulator.stream import DeviceStream, Generator
from edge_agent.telemetry import PayloadError, Reading, decode_telemetry


@pytest.fixture(scope="module")
def generator(pump_bundle: Path) -> Generator:
    return Generator(load_bundle(pump_bundle))


def test_same_seed_same_stream_other_seed_other_device(generator: Generator) -> None:
    first = DeviceStream(generator, seed=4).rows(100)
    again = DeviceStream(generator, seed=4).rows(100)
    other = DeviceStream(generator, seed=5).rows(100)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_rows_outside_the_bounds_are_mirrored_back_and_the_rest_are_as_drawn(
    generator: Generator, pump_bundle: Path
) -> None:
    """Bounds at the stream's own 5th and 95th percentiles: every bounded row lies inside them, and rows
    the unbounded stream drew inside are the same rows (the bound draws nothing). A fleet bounds its
    devices by the range the agent takes without an operating-range warning."""
    drawn = DeviceStream(generator, seed=4).rows(3000).astype(np.float64)
    low, high = np.quantile(drawn, 0.05, axis=0), np.quantile(drawn, 0.95, axis=0)
    bounded = DeviceStream(generator, seed=4, bounds=(low, high)).rows(3000)
    assert np.all((bounded >= low - 1e-4) & (bounded <= high + 1e-4))
    inside = (drawn >= low) & (drawn <= high)
    assert inside.mean() < 0.95
    np.testing.assert_allclose(bounded[inside], drawn[inside], rtol=1e-6)
    bundle = load_bundle(pump_bundle)
    norm = bundle.manifest.normalisation
    assert norm.low is not None and norm.high is not None
    walk = DeviceStream(generator, seed=4)._levels
    assert walk is not None  # the walk turns back at the training rows' range, normalised, smooth ones aside
    bounded = np.isfinite(walk.low)
    assert bounded.sum() >= len(bounded) - len(walk.smooth_index) > 0
    for walked, trained in ((walk.low, norm.low), (walk.high, norm.high)):
        expected = (np.asarray(trained) - generator.mean) / generator.scale
        np.testing.assert_allclose(walked[bounded], expected[bounded], rtol=1e-5)
    scenario = Scenario(devices=2, rate_hz=10.0, duration_s=10.0, seed=1, random=None, events=[])
    accepted = OperatingRange(bundle.manifest)
    for device in Fleet(bundle, scenario, start=0.0).devices:
        assert device.stream.bounds is not None
        np.testing.assert_array_equal(device.stream.bounds[0], accepted.low)
        np.testing.assert_array_equal(device.stream.bounds[1], accepted.high)


@pytest.fixture(scope="module", params=["remove", "keep"])
def either_generator(request: pytest.FixtureRequest) -> Generator:
    """The pump bundle's generator that draws shapes only, and the one that draws levels too."""
    name = "pump_bundle" if request.param == "remove" else "pump_bundle_keep"
    return Generator(load_bundle(request.getfixturevalue(name)))


def test_window_joins_are_no_rougher_than_the_stream_itself(either_generator: Generator) -> None:
    generator = either_generator
    stream = DeviceStream(generator, seed=1, variation=0.0)
    rows = (stream.rows(40 * (generator.window_len - stream.overlap)) - generator.mean) / generator.scale
    steps = np.abs(np.diff(rows, axis=0)).mean(axis=1)  # [rows - 1] mean absolute step per row
    chunk = generator.window_len - stream.overlap
    at_joins = steps[chunk - 1 :: chunk]  # the step from a chunk's last row to the next chunk's first
    inside = np.delete(steps, np.arange(chunk - 1, len(steps), chunk))
    assert at_joins.size >= 30
    assert np.median(at_joins) < 1.5 * np.median(inside), (np.median(at_joins), np.median(inside))


def test_streams_wander_in_level_as_the_training_windows_did(pump_bundle: Path) -> None:
    """The pump bundle's generator draws shapes only (window_level remove); the stream adds levels whose
    spread matches the training windows' (bundle.json level_process), untrimmed."""
    bundle = load_bundle(pump_bundle)
    process = bundle.manifest.level_process
    assert process is not None and bundle.manifest.score.window_level == "remove"
    generator = Generator(bundle)
    stream = DeviceStream(generator, seed=3, variation=0.0)
    window = generator.window_len
    rows = (stream.rows(300 * window) - generator.mean) / generator.scale
    levels = rows.reshape(300, window, -1).mean(axis=1)
    cholesky = np.asarray(process.cholesky)
    expected = np.sqrt((cholesky**2).sum(axis=1))
    moving = expected > 0.2
    assert moving.any()
    ratio = levels.std(axis=0)[moving] / expected[moving]
    # 300 windows of a slow, autocorrelated walk estimate each channel's spread roughly: judge the median.
    assert 0.6 < float(np.median(ratio)) < 1.6, ratio


def test_a_generator_that_draws_levels_too_streams_its_shapes_on_the_walked_levels(
    pump_bundle_keep: Path,
) -> None:
    """With window_level keep the generator draws levels as well; independently drawn windows would jump in
    level where they meet. The stream takes each window's own level off and walks levels as for `remove`."""
    bundle = load_bundle(pump_bundle_keep)
    assert bundle.manifest.score.window_level == "keep" and bundle.manifest.level_process is not None
    generator = Generator(bundle)
    assert generator.strip_levels
    latent = np.random.default_rng(0).standard_normal((16, generator.latent_dim)).astype(np.float32)
    levels = (generator.windows(latent).mean(axis=1) - generator.mean) / generator.scale
    np.testing.assert_allclose(levels, 0.0, atol=1e-4)  # shapes only, at the channel means


@pytest.mark.parametrize("fixture", ["pump_bundle", "pump_bundle_keep"])
def test_clean_simulated_streams_alert_within_the_calibrated_budget(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    bundle_dir: Path = request.getfixturevalue(fixture)
    bundle = load_bundle(bundle_dir)
    pipeline = open_pipeline(bundle_dir, BackendConfig(), DecisionConfig())
    generator = Generator(bundle)
    windows = alerts = 0
    for device in range(8):
        rows = DeviceStream(generator, seed=100 + device).rows(800)
        readings = [Reading(f"d{device}", float(i), row) for i, row in enumerate(rows)]
        outcomes, dropped = pipeline.push_many(readings)
        assert not dropped
        windows += len(outcomes)
        alerts += sum(outcome.decision.alert == "start" for outcome in outcomes)
    budget = bundle.threshold_for(SCORER_INT8).false_alarm_budget
    assert windows > 5000
    assert alerts / windows <= budget, f"{alerts} alert starts in {windows} windows, budget {budget}"


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        (faults.SPIKE, lambda before, after, s: np.isclose(after - before, 6 * s, rtol=1e-4)),
        (faults.LEVEL_SHIFT, lambda before, after, s: np.isclose(after - before, 4 * s, rtol=1e-4)),
        (faults.DRIFT, lambda before, after, s: np.isclose(after - before, 4 * s, rtol=1e-4)),  # halfway
    ],
)
def test_value_anomalies_move_the_chosen_channel_by_their_size(kind: str, check: object) -> None:
    mean = np.zeros(3, np.float32)
    scale = np.array([1.0, 2.0, 3.0], np.float32)
    injection = faults.Injection("d", kind, start=0.0, end=10.0, channels=[1])
    row = np.array([1.0, 1.0, 1.0], np.float32)
    out = injection.apply(row, 5.0, mean, scale, np.random.default_rng(0))
    assert check(row[1], out[1], scale[1])  # type: ignore[operator]
    np.testing.assert_array_equal(out[[0, 2]], row[[0, 2]])


def test_stuck_holds_the_first_value_and_broken_correlation_decouples() -> None:
    mean, scale = np.zeros(2, np.float32), np.ones(2, np.float32)
    rng = np.random.default_rng(0)
    stuck = faults.Injection("d", faults.STUCK, 0.0, 10.0, [0])
    values = [
        stuck.apply(np.array([float(i), float(i)], np.float32), i, mean, scale, rng)[0] for i in range(5)
    ]
    assert values == [0.0] * 5
    broken = faults.Injection("d", faults.BROKEN_CORRELATION, 0.0, 1e9, [1])
    drive = np.sin(np.arange(2000) / 10.0).astype(np.float32)
    out = np.array(
        [broken.apply(np.array([d, d], np.float32), i, mean, scale, rng) for i, d in enumerate(drive)]
    )
    assert abs(np.corrcoef(out[:, 0], out[:, 1])[0, 1]) < 0.3  # was 1.0 before the fault


@pytest.mark.parametrize(
    ("kind", "reason"), [(faults.MALFORMED, "bad_json"), (faults.NAN, "bad_json"), (faults.DUPLICATE, None)]
)
def test_transport_faults_produce_what_the_agent_must_reject(
    pump_bundle: Path, kind: str, reason: str
) -> None:
    scenario = Scenario(
        devices=1,
        duration_s=10,
        random=None,
        events=[{"device": 0, "kind": kind, "at_s": 0, "duration_s": 5}],
    )
    fleet = Fleet(load_bundle(pump_bundle), scenario, start=1000.0)
    payloads = fleet.reading(fleet.devices[0])
    if kind == faults.DUPLICATE:
        assert len(payloads) == 2 and payloads[0] == payloads[1]
        return
    with pytest.raises(PayloadError) as caught:
        decode_telemetry(payloads[0], "sim-0001", fleet.channels, 1000.0)
    assert caught.value.reason == reason


def test_out_of_order_sends_a_reading_after_its_successor_and_dropout_sends_nothing(
    pump_bundle: Path,
) -> None:
    scenario = Scenario(
        devices=2,
        rate_hz=1.0,
        duration_s=10,
        random=None,
        events=[
            {"device": 0, "kind": faults.OUT_OF_ORDER, "at_s": 0, "duration_s": 0.5},
            {"device": 1, "kind": faults.DROPOUT, "at_s": 0, "duration_s": 2.5},
        ],
    )
    fleet = Fleet(load_bundle(pump_bundle), scenario, start=1000.0)
    first, second = fleet.devices
    assert fleet.reading(first) == []
    late = fleet.reading(first)
    seqs = [decode_telemetry(p, "sim-0001", fleet.channels, 1000.0).seq for p in late]
    assert seqs == [1, 0]
    assert [len(fleet.reading(second)) for _ in range(4)] == [0, 0, 0, 1]


def test_streams_are_as_rough_and_as_spread_as_the_training_rows(pump_bundle: Path) -> None:
    """A GAN's windows come out smoother than sensor data; the stream adds the noise the bundle measured
    (level_process.noise_filter), so that rows change from one step to the next, and spread inside a
    window, as much as real rows do."""
    from trainer.demo.pump_data import make_pump_series

    bundle = load_bundle(pump_bundle)
    process = bundle.manifest.level_process
    assert process is not None and process.noise_filter is not None
    generator = Generator(bundle)
    real = (make_pump_series(3000, seed=5) - generator.mean) / generator.scale  # pump_bundle's rows

    def spread(rows: np.ndarray) -> np.ndarray:
        windows = rows[: len(rows) // 64 * 64].reshape(-1, 64, rows.shape[1])
        return windows.std(axis=1).mean(axis=0)

    steps, spreads = np.zeros(real.shape[1]), np.zeros(real.shape[1])
    for seed in range(4, 8):  # one 3,000-row stream holds a handful of duty changes: a noisy figure alone
        stream = DeviceStream(generator, seed=seed, variation=0.0)
        synthetic = (stream.rows(3000) - generator.mean) / generator.scale
        steps += np.diff(synthetic, axis=0).std(axis=0) / np.diff(real, axis=0).std(axis=0) / 4
        spreads += spread(synthetic) / spread(real) / 4
    assert 0.8 < float(np.median(steps)) < 1.25, steps
    assert 0.8 < float(np.median(spreads)) < 1.25, spreads


@dataclass
class _NoiseWindows:
    """A window source (the simulator's `WindowSource`) whose windows are the latent vectors themselves:
    white noise, so any flat stretch in a stream is the stream's doing."""

    latent_dim: int
    window_len: int
    mean: np.ndarray
    scale: np.ndarray
    level_process: LevelProcess | None
    row_range: tuple[np.ndarray, np.ndarray] | None = None

    def windows(self, latent: np.ndarray) -> np.ndarray:
        return latent.reshape(len(latent), self.window_len, -1).astype(np.float32)


def test_a_stream_varies_from_its_first_row() -> None:
    """The shape filter starts on a history of one row repeated, so its first taps - 1 rows were a transient
    (here twice the later rows' step size; four windows with the 255 taps a 4,800-row fit gets, the demo's
    first windows 1.2-1.5x as spread as later ones). The demo's short-lived clean devices alarmed on that
    start: 31 alerts in 5 device-hours of 100 devices x 180 s, none once those rows are dropped."""
    window, channels = 64, 2
    taps = np.tile(np.hanning(257)[1:-1] / np.hanning(257)[1:-1].sum(), (channels, 1))  # a low-pass, 255 taps
    process = LevelProcess(
        mean=[0.0] * channels,
        cholesky=(1e-3 * np.eye(channels)).tolist(),  # levels all but still: the steps are the shapes'
        lag_rows=window,
        autocorrelation=[0.9] * channels,
        shape_filter=taps.tolist(),
    )
    source = _NoiseWindows(
        window * channels, window, np.zeros(channels, np.float32), np.ones(channels, np.float32), process
    )
    first, later = [], []
    for seed in range(8):
        rows = DeviceStream(source, seed=seed, variation=0.0).rows(1024)
        shapes = rows - rows.mean(axis=0)
        steps = np.abs(np.diff(shapes, axis=0)).mean(axis=1)
        first.append(steps[: taps.shape[1] - 1].mean())
        later.append(steps[taps.shape[1] - 1 :].mean())
    assert 0.7 < np.mean(first) / np.mean(later) < 1.4, (np.mean(first), np.mean(later))


def test_a_stream_starts_at_its_level_not_inside_a_drawn_ramp(pump_bundle_keep: Path) -> None:
    """The first window is chosen as every later one is, by its head, here against the channel means: a
    `keep` generator draws ramps between duty points, and a device that began inside one started several
    spreads away from its level and alarmed on its first window."""
    generator = Generator(load_bundle(pump_bundle_keep))
    starts, later = [], []
    for seed in range(30):
        stream = DeviceStream(generator, seed=seed, variation=0.0)
        walk = stream._levels
        assert walk is not None
        level = walk.level.copy()  # before any row is drawn: the level the first chunk ramps from
        rows = (stream.rows(4 * generator.window_len) - generator.mean) / generator.scale
        starts.append(np.abs(rows[:4].mean(axis=0) - level).mean())
        later.append(np.abs(rows - rows.mean(axis=0)).mean())
    # The first rows sit no farther from the level than rows typically sit from their device's mean.
    assert np.median(starts) < np.median(later), (np.median(starts), np.median(later))


def test_a_chunk_drawn_again_restarts_the_floor_run_where_the_chunk_began() -> None:
    """The judge draws a chunk again from the state before it; a floor channel's run on its floor is part of
    that state, so a redraw neither inherits the dropped draw's run nor loses the published rows' run."""
    window, channels = 64, 1
    levels = np.concatenate([[0.0] * 60, np.linspace(0.0, 1.0, 45)])  # 60% of the map on the floor
    floor = FloorMap(
        channel=0,
        source=np.linspace(-3.0, 3.0, len(levels)).tolist(),
        target=levels.tolist(),
        longest_floor_run=1_000,  # never reached here: the test reads the count, not the cut
    )
    process = LevelProcess(
        mean=[0.0],
        cholesky=[[1e-3]],
        lag_rows=window,
        autocorrelation=[0.9],
        floor_maps=[floor],
    )
    source = _NoiseWindows(
        window * channels, window, np.zeros(1, np.float32), np.ones(1, np.float32), process
    )
    stream = DeviceStream(source, seed=3, variation=0.0)
    mapping = stream._floors
    assert mapping is not None and 0 in mapping.runs
    mapping.runs[0] = 7
    before = stream._state()
    for _ in range(20):
        stream._with_level(stream._next_shapes())
    assert mapping.runs[0] != 7  # the draws moved the run on
    stream._restore(before)
    assert stream._floors is not None and stream._floors.runs[0] == 7
