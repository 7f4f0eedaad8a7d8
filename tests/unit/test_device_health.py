"""Per-device data quality and score drift against the calibration reference."""

from __future__ import annotations

import numpy as np

from edge_agent.device_health import MIN_SCORES_FOR_DRIFT, DeviceHealth, reference_score
from edge_agent.reasons import Reason
from trainer.calibrate import calibrate


def test_the_reference_is_the_holdout_p90_recorded_at_calibration() -> None:
    scores = np.random.default_rng(0).gamma(2.0, 1.0, 5000)
    for method in ("pot", "quantile"):
        details = calibrate(scores, 1e-3, method).details
        assert reference_score(details) == float(np.quantile(scores, 0.9))
    # Older POT bundles: the POT start at the 0.9 quantile is the same figure.
    assert reference_score({"initial_quantile": 0.9, "initial_threshold": 2.5}) == 2.5
    assert reference_score({"initial_quantile": 0.95, "initial_threshold": 2.5}) is None


def test_drift_is_one_on_calibration_like_scores_and_grows_when_they_shift() -> None:
    rng = np.random.default_rng(1)
    calibration = rng.normal(0, 1, 20_000)
    reference = float(np.quantile(calibration, 0.9))
    health = DeviceHealth()
    health.received("steady")
    health.received("shifted")
    for score in rng.normal(0, 1, 512):
        health.scored("steady", float(score), reference)
    for score in rng.normal(1.0, 1, 512):
        health.scored("shifted", float(score), reference)
    snapshot = health.snapshot(limit=10)
    assert 0.7 < snapshot["steady"]["drift"] < 1.3  # type: ignore[operator]
    assert snapshot["shifted"]["drift"] > 3.0  # type: ignore[operator]


def test_drift_waits_for_enough_scores_and_rates_count_rejections() -> None:
    health = DeviceHealth()
    for _ in range(10):
        health.received("d1")
    health.rejected("d1", Reason.MISSING_CHANNEL)
    health.rejected("d1", Reason.BAD_JSON)
    for _ in range(MIN_SCORES_FOR_DRIFT - 1):
        health.scored("d1", 2.0, 1.0)
    row = health.snapshot(limit=10)["d1"]
    assert row == {"received": 10, "rejected_rate": 0.2, "missing_channel_rate": 0.1, "drift": None}
    health.scored("d1", 2.0, 1.0)
    assert health.snapshot(limit=10)["d1"]["drift"] == 10.0  # every score above the reference
    health.scored("d1", 2.0, 5.0)  # another model took over: its scale starts afresh
    assert health.snapshot(limit=10)["d1"]["drift"] is None


def test_a_large_fleet_reports_its_worst_devices_first() -> None:
    health = DeviceHealth()
    for n in range(50):
        device = f"d{n}"
        health.received(device)
        for _ in range(MIN_SCORES_FOR_DRIFT):
            health.scored(device, 2.0 if n % 10 == 0 else 0.0, 1.0)
    assert set(health.snapshot(limit=5)) == {"d0", "d10", "d20", "d30", "d40"}


def test_unknown_devices_are_not_tracked_past_the_bound() -> None:
    health = DeviceHealth(max_devices=3)
    for n in range(5):
        health.received(f"d{n}")
    assert len(health.snapshot(limit=100)) == 3
