"""Thresholds from held-out scores: POT extrapolates the tail, quantile is the fallback."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.errors import BundleError
from trainer.calibrate import (
    MIN_TAIL,
    calibrate,
    evenly_spaced,
    pot_threshold,
    quantile_threshold,
    regime_gap,
)
from trainer.fit_summary import _calibration_line
from trainer.gpd import fit_gpd


@pytest.mark.parametrize("shape", [-0.4, 0.0, 0.3])
def test_the_profile_fit_finds_scipys_maximum_or_a_higher_one_and_recovers_the_tail(shape: float) -> None:
    """The one-parameter profile search replaces scipy's generic fit (10x faster): never a worse likelihood,
    and near the true parameters on a large sample."""
    from scipy.stats import genpareto

    rng = np.random.default_rng(7)
    for size in (40, 300):
        x = genpareto.rvs(shape, scale=2.0, size=size, random_state=rng)
        ours = fit_gpd(x)
        theirs = genpareto.fit(x, floc=0.0)
        assert genpareto.logpdf(x, ours[0], 0.0, ours[1]).sum() >= (
            genpareto.logpdf(x, theirs[0], 0.0, theirs[2]).sum() - 1e-6
        )
    large = genpareto.rvs(shape, scale=2.0, size=20_000, random_state=rng)
    fitted_shape, fitted_scale = fit_gpd(large)
    assert fitted_shape == pytest.approx(shape, abs=0.03)
    assert fitted_scale == pytest.approx(2.0, rel=0.05)


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


def test_a_regime_seen_in_training_but_not_in_the_holdout_raises_no_alarm_when_it_comes_back() -> None:
    """The holdout is one calm stretch; the training part also held a noisier regime (scale 3)."""
    rng = np.random.default_rng(4)
    holdout = rng.gamma(2.0, size=800)
    train = np.concatenate([rng.gamma(2.0, size=2000), 3.0 * rng.gamma(2.0, size=2000)])
    alone = calibrate(holdout, 1e-3, "pot", 0.9)
    both = calibrate(holdout, 1e-3, "pot", 0.9, train_scores=train)
    noisy_regime_again = 3.0 * rng.gamma(2.0, size=200_000)
    assert np.mean(noisy_regime_again > alone.value) > 0.1  # the holdout alone alarms on a known regime
    assert np.mean(noisy_regime_again > both.value) < 4e-3  # the stricter threshold keeps the budget
    assert both.value == both.details["train_threshold"] > both.details["holdout_threshold"] == alone.value
    assert both.details["train_windows"] == 4000 and both.calibration_windows == 4800  # both calibrate
    # The drift reference stays the holdout's quantiles.
    assert both.details["holdout_q50"] == alone.details["holdout_q50"]
    # A holdout with the heavier tail keeps its own threshold: the rule only ever raises it.
    heavier_holdout = calibrate(train, 1e-3, "pot", 0.9, train_scores=holdout)
    assert heavier_holdout.value == calibrate(train, 1e-3, "pot").value


def test_a_threshold_records_the_method_of_the_calibration_that_set_it() -> None:
    """A holdout too short for POT falls back to its quantile; when the training windows' POT sets the
    threshold, bundle.json must say POT and carry that fit's parameters, not the holdout's fallback."""
    rng = np.random.default_rng(6)
    holdout, train = rng.gamma(2.0, size=60), 1.5 * rng.gamma(2.0, size=3000)
    threshold = calibrate(holdout, 1e-3, "pot", 0.9, train_scores=train)
    on_train = calibrate(train, 1e-3, "pot", 0.9)
    assert calibrate(holdout, 1e-3, "pot", 0.9).method == "quantile"  # 6 scores above the POT start
    assert threshold.value == on_train.value == threshold.details["train_threshold"]
    assert threshold.method == "pot"
    assert threshold.details["gpd_shape"] == on_train.details["gpd_shape"]
    assert threshold.details["tail_size"] == on_train.details["tail_size"]
    assert "(pot) set by the training windows (in sample)" in _calibration_line(threshold)


def test_the_training_sample_is_evenly_spaced_over_the_whole_part() -> None:
    windows = np.arange(10_000, dtype=np.float32).reshape(10_000, 1, 1)
    picked = evenly_spaced(windows, 100)
    assert len(picked) == 100 and picked[0, 0, 0] == 0 and picked[-1, 0, 0] == 9_999
    assert np.all(np.diff(picked[:, 0, 0]) > 0)
    short = windows[:50]
    assert np.array_equal(evenly_spaced(short, 100), short)  # fewer than the cap: all of them


def test_severity_levels_are_calibrated_by_the_same_rule_and_stay_ordered() -> None:
    rng = np.random.default_rng(5)
    holdout = rng.exponential(size=3000)
    train = np.concatenate([rng.exponential(size=2000), 2.0 * rng.exponential(size=2000)])
    levels = {"critical": 1e-4, "warning": 1e-2}
    both = calibrate(holdout, 1e-3, "pot", 0.9, train_scores=train, levels=levels)
    critical, warning = both.levels["critical"], both.levels["warning"]
    assert warning.value < both.value < critical.value
    assert (critical.false_alarm_budget, warning.false_alarm_budget) == (1e-4, 1e-2)
    # Each level is the stricter of holdout and training calibrations at its own budget, like the threshold.
    on_train = pot_threshold(train, 1e-4, 0.9).value
    assert critical.value == max(pot_threshold(holdout, 1e-4, 0.9).value, on_train)
    fresh_noisy = 2.0 * rng.exponential(size=1_000_000)  # the training part's noisier regime again
    assert np.mean(fresh_noisy > critical.value) < 1e-3 < np.mean(fresh_noisy > warning.value)
    # No levels asked for, none recorded; a budget just below the threshold's still sits at or above it.
    assert calibrate(holdout, 1e-3, "pot", 0.9).levels == {}
    tight = calibrate(holdout, 1e-3, "quantile", levels={"critical": 9e-4})
    assert tight.levels["critical"].value >= tight.value


def test_a_threshold_names_the_strictest_level_a_score_reaches() -> None:
    rng = np.random.default_rng(6)
    levels = {"critical": 1e-5, "high": 1e-4, "warning": 1e-2}
    threshold = calibrate(rng.exponential(size=3000), 1e-3, "pot", levels=levels)
    high, critical = threshold.levels["high"].value, threshold.levels["critical"].value
    warning = threshold.levels["warning"].value
    assert warning < threshold.value < high < critical
    assert threshold.severity_of(warning - 1e-9) is None
    assert threshold.severity_of((warning + threshold.value) / 2) == "warning"
    assert threshold.severity_of(threshold.value + 1e-9) == "alert"  # the threshold's own level
    assert threshold.severity_of((high + critical) / 2) == "high"
    assert threshold.severity_of(critical + 1.0) == "critical"
    assert threshold.at_level(None) == threshold.value and threshold.at_level("high") == high
    with pytest.raises(BundleError, match="no severity level 'urgent' .*critical, high"):
        threshold.at_level("urgent")


def test_a_threshold_says_how_many_windows_back_it_and_how_sure_it_is() -> None:
    rng = np.random.default_rng(5)
    holdout, train = rng.gamma(2.0, size=2000), rng.gamma(2.0, size=4000)
    threshold = calibrate(holdout, 1e-3, "pot", 0.9, train_scores=train, block=64)
    details = threshold.details
    assert threshold.calibration_windows == 6000
    assert details["holdout_effective_windows"] == pytest.approx(2000 / 64)
    assert details["train_expected_exceedances"] == pytest.approx(4000 / 64 * 1e-3)
    low, high = details["threshold_interval_low"], details["threshold_interval_high"]
    assert low < high and low <= threshold.value * 1.05 and high >= threshold.value * 0.95
    # Ten times the data narrows the interval.
    bigger = calibrate(rng.gamma(2.0, size=20000), 1e-3, "pot", 0.9, block=64).details
    assert bigger["threshold_interval_high"] - bigger["threshold_interval_low"] < high - low


def test_a_budget_the_holdout_cannot_check_is_a_warning_with_the_budget_that_it_can(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scores = np.random.default_rng(6).gamma(2.0, size=640)  # 10 independent 64-row windows
    calibrate(scores, 1e-3, "pot", 0.9, block=64)
    warning = next(
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "holds about" in r.getMessage()
    )
    assert "about 10 independent windows" in warning and "a budget of at least 0.1" in warning
    caplog.clear()
    calibrate(scores, 0.2, "pot", 0.9, block=64)
    assert not [r for r in caplog.records if "holds about" in r.getMessage()]


def test_a_holdout_too_short_for_any_budget_says_so_rather_than_advise_a_budget_above_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TEP's 500 rows leave a holdout of about one independent window; the advice was 'a budget of at
    least 1.73', which no budget can be."""
    scores = np.random.default_rng(7).gamma(2.0, size=40)  # under one independent 64-row window
    calibrate(scores, 1e-3, "pot", 0.9, block=64)
    warning = next(r.getMessage() for r in caplog.records if "holds about" in r.getMessage())
    assert "no false-alarm budget can be checked" in warning and "budget of at least" not in warning


def test_a_holdout_from_another_regime_is_a_warning_in_the_log_and_the_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """NAB ec2_cpu_utilization_825cc2's training part ends in a fall: its holdout set a threshold 53x the
    training windows' (198x on INT8), and the bundle said nothing of being deaf below it."""
    rng = np.random.default_rng(8)
    train = rng.gamma(2.0, size=4000)
    shifted = calibrate(50.0 * rng.gamma(2.0, size=2000), 1e-3, "pot", 0.9, train_scores=train)
    gap = regime_gap(shifted.details)
    assert gap is not None and gap > 10.0
    warning = next(r.getMessage() for r in caplog.records if "unlike the rest" in r.getMessage())
    assert f"{gap:.0f}x the training windows'" in warning
    assert "another regime?" in _calibration_line(shifted)  # the fit summary says it too
    caplog.clear()
    same = calibrate(rng.gamma(2.0, size=2000), 1e-3, "pot", 0.9, train_scores=train)
    same_gap = regime_gap(same.details)
    assert same_gap is not None and 0.5 < same_gap < 2.0
    assert not [r for r in caplog.records if "unlike the rest" in r.getMessage()]
    assert "another regime" not in _calibration_line(same)
