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
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from edge_agent.bundle import SeverityLevel, Threshold

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
    from scipy.stats import genpareto

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shape, _, scale = genpareto.fit(excess, floc=0.0)
    shape = float(min(shape, _MAX_SHAPE))
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


def calibrate(
    scores: npt.NDArray[np.floating],
    budget: float,
    method: str,
    initial_quantile: float = 0.9,
    train_scores: npt.NDArray[np.floating] | None = None,
    levels: Mapping[str, float] | None = None,
) -> Threshold:
    """Threshold by the configured method, plus the holdout score quantiles (the agent's drift reference).

    `scores` are the holdout's. With `train_scores` (the training windows' own scores) the threshold is the
    stricter of the two calibrations. Why: the holdout is one contiguous stretch at the end of the data, so
    it shows only the regime of that stretch, while the training windows show every regime the model saw;
    a threshold that the training data itself would cross raises alarms as soon as an earlier regime comes
    back. The training scores are in-sample, so if anything they understate that tail.

    `levels` (name -> false-alarm budget) adds named operating points by the same rule. Both calibrations
    are monotone in the budget (the GPD fit and the quantile fallback do not depend on it), so a level with
    a smaller budget than the threshold's never sits below it and one with a larger budget never above it.
    """
    threshold = _by_method(scores, budget, method, initial_quantile)
    reference = {f"holdout_q{int(q * 100)}": float(np.quantile(scores, q)) for q in DRIFT_QUANTILES}
    parts = [scores]
    if train_scores is not None and len(train_scores):
        parts.append(train_scores)
        on_train = _by_method(train_scores, budget, method, initial_quantile)
        reference |= {
            "holdout_threshold": threshold.value,
            "train_threshold": on_train.value,
            "train_windows": float(len(train_scores)),
        }
        threshold = threshold.model_copy(update={"value": max(threshold.value, on_train.value)})
    named = {
        name: SeverityLevel(
            value=max(_by_method(part, level_budget, method, initial_quantile).value for part in parts),
            false_alarm_budget=level_budget,
        )
        for name, level_budget in (levels or {}).items()
    }
    return threshold.model_copy(update={"details": {**threshold.details, **reference}, "levels": named})
