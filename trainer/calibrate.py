"""Alert thresholds from held-out normal scores, with a false-alarm budget as the knob. No torch here.

A plain (1 - budget) quantile of a few thousand scores rests on the few largest ones, so it jumps from run
to run and cannot go beyond the largest score seen. Peaks-over-threshold (POT, Siffer et al. 2017) fits a
generalised Pareto distribution to the tail above a moderate quantile and reads the threshold off the fit,
which uses every tail score and extrapolates past the sample for small budgets.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt

from edge_agent.bundle import SeverityLevel, Threshold
from trainer.gpd import fit_gpd

log = logging.getLogger(__name__)

DRIFT_QUANTILES = (0.5, 0.9, 0.99)  # recorded with every threshold: the agent compares live scores
MIN_TAIL = 20  # fewer exceedances than this and the GPD fit is noise: fall back to the quantile
_MAX_SHAPE = 0.5  # heavier tails than this from a small sample are fitting noise


def quantile_threshold(scores: npt.NDArray[np.floating], budget: float) -> Threshold:
    """Empirical (1 - budget) quantile."""
    value = float(np.quantile(scores, 1.0 - budget, method="higher"))
    return Threshold(
        value=value, method="quantile", false_alarm_budget=budget, calibration_windows=len(scores)
    )


def pot_threshold(scores: npt.NDArray[np.floating], budget: float, initial_quantile: float) -> Threshold:
    """POT threshold; falls back to the quantile (and says so) when the tail is too thin to fit."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    tail_fraction = 1.0 - initial_quantile
    if budget >= tail_fraction:
        log.info(
            "budget %.3g is not in the tail above the %.2f quantile: using the quantile",
            budget,
            initial_quantile,
        )
        return quantile_threshold(scores, budget)
    initial = float(np.quantile(scores, initial_quantile))
    excess = scores[scores > initial] - initial
    if len(excess) < MIN_TAIL or float(excess.std()) == 0.0:
        log.warning("only %d scores above the POT start: threshold is a plain quantile", len(excess))
        return quantile_threshold(scores, budget)
    shape, scale = fit_gpd(excess)
    shape = min(shape, _MAX_SHAPE)
    ratio = budget * n / len(excess)
    if abs(shape) < 1e-6:
        value = initial - scale * math.log(ratio)
    else:
        value = initial + scale / shape * (ratio ** (-shape) - 1.0)
    return Threshold(
        value=float(max(value, initial)),
        method="pot",
        false_alarm_budget=budget,
        calibration_windows=n,
        details={
            "initial_threshold": initial,
            "initial_quantile": initial_quantile,
            "gpd_shape": shape,
            "gpd_scale": float(scale),
            "tail_size": float(len(excess)),
        },
    )


TRAIN_CALIBRATION_CAP = 4096  # training windows scored for calibration (evenly spaced over the part)


def evenly_spaced(
    windows: npt.NDArray[np.float32], cap: int = TRAIN_CALIBRATION_CAP
) -> npt.NDArray[np.float32]:
    """At most `cap` windows, evenly spaced in time, so every stretch of the part is represented."""
    if len(windows) <= cap:
        return windows
    picked: npt.NDArray[np.float32] = windows[np.linspace(0, len(windows) - 1, cap).astype(int)]
    return picked


def _by_method(
    scores: npt.NDArray[np.floating], budget: float, method: str, initial_quantile: float
) -> Threshold:
    if method == "pot":
        return pot_threshold(scores, budget, initial_quantile)
    return quantile_threshold(scores, budget)


BOOTSTRAP_DRAWS = 24  # resamples behind a threshold's interval: a rough 5-95% range in about a second
MIN_EXPECTED_EXCEEDANCES = 1.0  # a budget whose expected count of normal windows above it is below this
# cannot be checked on the data at hand: the threshold is an extrapolation, and the fit says so


def effective_windows(count: int, block: int) -> float:
    """Windows that overlap by all but `block - 1` readings carry about count / block independent looks."""
    return count / max(block, 1)


def bootstrap_interval(
    scores: npt.NDArray[np.floating],
    budget: float,
    method: str,
    initial_quantile: float,
    block: int,
    seed: int = 0,
) -> tuple[float, float]:
    """5% and 95% points of the threshold over moving-block resamples of `scores` (blocks of `block`
    consecutive windows, since neighbouring windows share readings and their scores move together)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    block = int(min(max(block, 1), max(n // 4, 1)))
    rng = np.random.default_rng(seed)
    starts_count = n - block + 1
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(BOOTSTRAP_DRAWS):
            starts = rng.integers(0, starts_count, size=-(-n // block))
            sample = np.concatenate([scores[s : s + block] for s in starts])[:n]
            values.append(_quiet(sample, budget, method, initial_quantile))
    low, high = np.quantile(values, [0.05, 0.95])
    return float(low), float(high)


@contextmanager
def quietly() -> Iterator[None]:
    """Calibrations without their log lines, for the many a bootstrap or a choice among candidates makes:
    the fit's own calibration says the same once."""
    previous = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(previous)


def _quiet(scores: npt.NDArray[np.floating], budget: float, method: str, initial_quantile: float) -> float:
    """The threshold's value alone, quietly."""
    with quietly():
        return _by_method(scores, budget, method, initial_quantile).value


def support(count: int, block: int, budget: float) -> dict[str, float]:
    """How many windows back a threshold and how many normal windows above it they should show."""
    effective = effective_windows(count, block)
    return {"effective_windows": effective, "expected_exceedances": budget * effective}


def calibrate(
    scores: npt.NDArray[np.floating],
    budget: float,
    method: str,
    initial_quantile: float = 0.9,
    train_scores: npt.NDArray[np.floating] | None = None,
    levels: Mapping[str, float] | None = None,
    block: int = 0,
    cross_fit_scores: npt.NDArray[np.floating] | None = None,
) -> Threshold:
    """Threshold by the configured method, plus the holdout score quantiles (the agent's drift reference).

    `scores` are the holdout's. With `train_scores` (the training windows' own scores) the threshold is the
    stricter of the two calibrations. Why: the holdout is one contiguous stretch at the end of the data, so
    it shows only the regime of that stretch, while the training windows show every regime the model saw;
    a threshold that the training data itself would cross raises alarms as soon as an earlier regime comes
    back. The training scores are in-sample, so if anything they understate that tail. `cross_fit_scores`
    (the training windows scored by fits that never saw them, `trainer.cross_fit`) are a third calibration
    by the same rule, and the strictest of all sets the threshold.

    `block` (the window length, for overlapping windows) adds how sure the threshold is: the windows
    behind it, their effective count, the expected normal windows above it, and a 5-95% bootstrap
    interval; a budget the data cannot check (fewer than one expected exceedance) is logged as a warning.

    `levels` (name -> false-alarm budget) adds named operating points by the same rule. Both calibrations
    are monotone in the budget (the GPD fit and the quantile fallback do not depend on it), so a level with
    a smaller budget than the threshold's never sits below it and one with a larger budget never above it.
    """
    threshold = _by_method(scores, budget, method, initial_quantile)
    reference = {f"holdout_q{int(q * 100)}": float(np.quantile(scores, q)) for q in DRIFT_QUANTILES}
    others = {
        name: part
        for name, part in (("train", train_scores), ("cross_fit", cross_fit_scores))
        if part is not None and len(part)
    }
    parts = [scores, *others.values()]
    deciding = scores
    if others:
        reference["holdout_threshold"] = threshold.value
        strictest = threshold
        for name, part in others.items():
            on_part = _by_method(part, budget, method, initial_quantile)
            reference |= {f"{name}_threshold": on_part.value, f"{name}_windows": float(len(part))}
            if on_part.value > strictest.value:
                strictest, deciding = on_part, part
        # The method and fit parameters are the deciding calibration's: a holdout too short for POT says
        # "quantile", while the cross-fitted windows that set the value may have been fitted by POT.
        threshold = strictest.model_copy(update={"calibration_windows": sum(len(part) for part in parts)})
    _warn_of_another_regime(reference)
    if block > 0:
        reference |= _certainty(scores, others, deciding, budget, method, initial_quantile, block)
    with quietly():  # the alert threshold's calibration above has said what the levels' would
        named = {
            name: SeverityLevel(
                value=max(_by_method(part, level_budget, method, initial_quantile).value for part in parts),
                false_alarm_budget=level_budget,
            )
            for name, level_budget in (levels or {}).items()
        }
    return threshold.model_copy(update={"details": {**threshold.details, **reference}, "levels": named})


# The holdout's own threshold this many times the training windows' own: the data's last stretch is another
# regime. Over round 27's 37 benchmark bundles (NAB, SMD, TEP, demo; both graphs) it read 0.04-2.0, except
# NAB ec2_cpu_utilization_825cc2 (53-226), whose training part ends in a fall: it flags nothing smaller.
REGIME_GAP = 10.0


def regime_gap(details: Mapping[str, float]) -> float | None:
    """A threshold's holdout calibration over its training windows' (the higher of in-sample and
    cross-fitted), read from the threshold's details; None where the holdout alone calibrated it."""
    own = [details[key] for key in ("train_threshold", "cross_fit_threshold") if key in details]
    if not own:
        return None
    return details["holdout_threshold"] / max(max(own), 1e-12)


def _warn_of_another_regime(details: Mapping[str, float]) -> None:
    """Why: the threshold is the strictest calibration, so a holdout that holds a change the rest of the data
    never shows sets it, and the bundle is then deaf to anything smaller than that change, with no other
    sign of it."""
    gap = regime_gap(details)
    if gap is not None and gap >= REGIME_GAP:
        log.warning(
            "the holdout (the training rows' last stretch) sets a threshold %.0fx the training windows': "
            "that stretch is unlike the rest of the data, and the bundle will not flag anything smaller "
            "than it; look at those rows (a change of operating point, a sensor fault?) and fit on rows of "
            "the regime the agent will score",
            gap,
        )


def _certainty(
    holdout: npt.NDArray[np.floating],
    others: Mapping[str, npt.NDArray[np.floating]],
    deciding: npt.NDArray[np.floating],
    budget: float,
    method: str,
    initial_quantile: float,
    block: int,
) -> dict[str, float]:
    """The support and bootstrap interval of the calibration that set the threshold; warns when thin."""
    holdout_support = support(len(holdout), block, budget)
    facts = {f"holdout_{k}": v for k, v in holdout_support.items()}
    for name, part in others.items():
        facts |= {f"{name}_{k}": v for k, v in support(len(part), block, budget).items()}
    low, high = bootstrap_interval(deciding, budget, method, initial_quantile, block)
    facts |= {"threshold_interval_low": low, "threshold_interval_high": high}
    # Out-of-sample windows: the holdout's and the cross-fitted ones (the training windows' own are not).
    unseen = support(len(holdout) + len(others.get("cross_fit", ())), block, budget)
    if unseen["expected_exceedances"] < MIN_EXPECTED_EXCEEDANCES:
        checkable = MIN_EXPECTED_EXCEEDANCES / max(unseen["effective_windows"], 1e-9)
        remedy = (
            f"more normal data, or a budget of at least {checkable:.3g}, makes it checkable"
            if checkable < 1.0
            else "no false-alarm budget can be checked on so few: more normal data is what makes it checkable"
        )
        log.warning(
            "the %s hold%s about %.0f independent windows: a false-alarm budget of %.3g expects %.2f "
            "normal windows above the threshold there, so the threshold is an extrapolation (its 5-95%% "
            "range is %.3g-%.3g); %s",
            "holdout and the cross-fitted training windows" if "cross_fit" in others else "holdout",
            "" if "cross_fit" in others else "s",
            unseen["effective_windows"],
            budget,
            unseen["expected_exceedances"],
            low,
            high,
            remedy,
        )
    return facts
