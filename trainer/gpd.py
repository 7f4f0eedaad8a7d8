"""Maximum-likelihood fit of a generalised Pareto distribution to threshold excesses (location 0).

scipy's `genpareto.fit` runs a generic two-parameter Nelder-Mead through its distribution machinery: about
110 likelihood evaluations, 22 ms a fit (mean over 300 generated tails), and a fit makes about a hundred of
them (every threshold and its bootstrap). The likelihood profiles to one parameter (Grimshaw 1993): for
theta = shape / scale the best shape is the mean of log(1 + theta x), so a grid and a bounded Brent search on
theta find the maximum in about 2 ms, at a likelihood at least as high as scipy's wherever a maximum exists.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar

_GRID = 64  # theta values tried each side of 0 before the Brent search refines the best one
# Below shape -1 the likelihood grows without bound towards the largest excess, so any point there is
# arbitrary: scipy stopped at -1.12 on TEP's cross-fitted tail, an upper endpoint (8.588) below a score the
# tail holds (8.629). At -1 the tail is uniform up to the largest excess.
_LOWEST_SHAPE = -1.0


def _shape_and_scale(theta: float, x: npt.NDArray[np.float64]) -> tuple[float, float]:
    """The shape and scale that are best for theta = shape / scale (theta 0: the exponential limit)."""
    if abs(theta) < 1e-12:
        return 0.0, float(x.mean())
    shape = float(np.log1p(theta * x).mean())
    return shape, shape / theta


def _negative_profile(theta: float, x: npt.NDArray[np.float64]) -> float:
    """-log-likelihood at theta with the shape and scale that are best for it (inf outside the support)."""
    shape, scale = _shape_and_scale(theta, x)
    if not np.isfinite(shape) or scale <= 0.0 or shape < _LOWEST_SHAPE:
        return math.inf
    return float(len(x) * (math.log(scale) + 1.0 + shape))


def fit_gpd(excess: npt.NDArray[np.floating]) -> tuple[float, float]:
    """(shape, scale) of the generalised Pareto distribution that best fits positive `excess`."""
    x = np.asarray(excess, dtype=np.float64)
    # theta below 0 is bounded by the support (1 + theta x > 0); above 0, a theta of 1e4 / mean puts the
    # shape past any tail this fit keeps (the caller caps the shape at 0.5)
    negative = -(1.0 - np.geomspace(1e-6, 1.0, _GRID, endpoint=False)) / float(x.max())
    positive = np.geomspace(1e-6, 1e4, _GRID) / float(x.mean())
    grid = np.concatenate([negative, [0.0], positive])
    values = np.array([_negative_profile(float(theta), x) for theta in grid])
    best = int(np.argmin(values))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    with warnings.catch_warnings():  # a bracket end outside the support reads inf: Brent steps away
        warnings.simplefilter("ignore", RuntimeWarning)
        found = minimize_scalar(
            _negative_profile, bounds=(low, high), args=(x,), method="bounded", options={"xatol": 1e-12}
        )
    theta = float(found.x) if found.fun <= values[best] else float(grid[best])
    return _shape_and_scale(theta, x)
