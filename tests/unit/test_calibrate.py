"""Thresholds from held-out scores: POT extrapolates the tail, quantile is the fallback."""

from __future__ import annotations

import numpy as np

from trainer.calibrate import MIN_TAIL, calibrate, pot_threshold, quantile_threshold


def test_pot_recovers_an_exponential_tail_beyond_the_sample() -> None:
    # For Exp(1), P(score > t) = exp(-t): budget 1e-4 -> t = 9.21, past most maxima of 2000 samples.
    errors_pot, errors_quantile = [], []
    for seed in range(20):
        scores = np.random.default_rng(seed).exponential(size=2000)
        pot = pot_threshold(scores, 1e-4, 0.9)
        assert pot.method == "pot"
        errors_pot.append(abs(pot.value - np.log(1e4)))
        errors_quantile.append(abs(quantile_threshold(scores, 1e-4).value - np.log(1e4)))
    assert np.median(errors_pot) < 1.0
    # The quantile cannot go past the sample maximum, so it is further off on average.
    assert np.mean(errors_pot) < np.mean(errors_quantile)


def test_realised_false_alarm_rate_is_near_the_budget_on_fresh_normal_scores() -> None:
    rng = np.random.default_rng(1)
    threshold = calibrate(rng.gamma(2.0, size=3000), 1e-3, "pot", 0.9)
    fresh = rng.gamma(2.0, size=2_000_000)
    rate = float(np.mean(fresh > threshold.value))
    assert 0.25e-3 < rate < 4e-3
    assert threshold.details["tail_size"] >= MIN_TAIL


def test_thin_tail_falls_back_to_the_quantile() -> None:
    scores = np.random.default_rng(2).normal(size=100)
    threshold = pot_threshold(scores, 0.05, 0.9)  # budget not inside the tail above the 0.9 quantile
    assert threshold.method == "quantile"
    few = pot_threshold(np.random.default_rng(3).normal(size=150), 0.01, 0.9)  # 15 exceedances < MIN_TAIL
    assert few.method == "quantile"
    assert few.value == quantile_threshold(np.random.default_rng(3).normal(size=150), 0.01).value
