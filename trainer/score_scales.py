"""The score's scales, measured on training windows: what every term of the scorer graph divides by.

Why a stage of its own: the graph's terms only mean something next to what normal data gives them (a
residual of 0.1 is huge for a smooth channel and nothing for a noisy one), and every scale must come from
training windows alone, never from the holdout that calibrates the thresholds or from test data.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import torch

from trainer.scorer_graph import (
    MIN_TERM_SCALE,
    TERMS,
    LatentDistance,
    ScorerModule,
    ScoreTerms,
    ScoreWeights,
    TermScales,
    floored_residual_scale,
    mean_abs_change,
    newest_step_weights,
    recent_level,
)
from trainer.windows import Normaliser

log = logging.getLogger(__name__)

TAIL_QUANTILE = 0.99  # each term is divided by this quantile of its training values
CHANGE_BAND_QUANTILES = (0.001, 0.999)  # the variability band: these quantiles of training changes...
CHANGE_BAND_MARGIN = 1.5  # ...widened by this factor each way, so only a clear departure counts
FLAT_CHANGE = 1e-6  # a channel whose changes go this low in training may be flat: no stuck check
NO_UPPER_BAND = 1e12  # the upper band of a channel flat all through training: no change reaches it
LEVEL_RIDGE = 1e-2  # share of the mean level variance added to the diagonal before inverting
LEVEL_BLOCKS = 5  # time blocks for the level model's out-of-sample tail (level_generalisation)
TREND_BLOCKS = 5  # time blocks whose mean levels must move one way for a channel to count as drifting
BEYOND_SHARE = 0.5  # share of held-out levels beyond the training range that makes a trending channel drift
_BATCH = 512


def _network_layout(windows: npt.NDArray[np.float32], normaliser: Normaliser) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(normaliser.apply(windows).transpose(0, 2, 1)))


def _level_gaussian(
    levels: torch.Tensor, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and ridge-regularised precision of the training windows' per-channel means [n, C].

    `keep` (bool [C]): the Gaussian of those channels alone; the others' rows and columns of the precision
    are zero, so their levels add nothing to the level term."""
    data = levels.double()
    centred = data - data.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / max(1, len(data) - 1)
    ridge = LEVEL_RIDGE * max(float(cov.diagonal().mean()), MIN_TERM_SCALE)
    kept = torch.arange(cov.shape[0]) if keep is None else torch.nonzero(keep).flatten()
    precision = torch.zeros_like(cov)
    if len(kept):
        sub = cov[kept][:, kept] + ridge * torch.eye(len(kept), dtype=cov.dtype)
        precision[kept.unsqueeze(1), kept] = torch.linalg.inv(sub)
    return data.mean(dim=0).float(), precision.float()


def drifting_level_channels(levels: torch.Tensor, holdout_levels: torch.Tensor | None) -> torch.Tensor:
    """bool [C]: channels whose level moves one way through the training windows (each of TREND_BLOCKS time
    blocks' mean beyond the one before, in one direction) and whose held-out levels lie mostly beyond the
    training windows' range.

    Why: such a channel is on its way somewhere the training rows never reached (a temperature warming
    through a short recording), so a Gaussian of its training levels alarms on every later normal window:
    a pump fitted on its first 400 rows alarmed on 0.73 of its later rows, the inlet temperature leading 542
    of 544 of them, and on none without the level term (round 38). Why both tests: a slow stationary channel
    wanders past a few hundred rows' range too, but not one way through all blocks and on past them.
    """
    channels = levels.shape[1]
    if holdout_levels is None or len(holdout_levels) == 0 or len(levels) < TREND_BLOCKS:
        return torch.zeros(channels, dtype=torch.bool)
    means = torch.stack([block.mean(dim=0) for block in torch.tensor_split(levels, TREND_BLOCKS)])
    steps = means.diff(dim=0)
    one_way = (steps > 0).all(dim=0) | (steps < 0).all(dim=0)
    low, high = levels.min(dim=0).values, levels.max(dim=0).values
    beyond = ((holdout_levels < low) | (holdout_levels > high)).float().mean(dim=0)
    return one_way & (beyond > BEYOND_SHARE)


def _level_distance(levels: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """[n]: the level term as the graph computes it (positive per-channel parts, summed)."""
    centred = levels.float() - mean
    return torch.relu((centred @ precision) * centred).sum(dim=1)


def level_generalisation(
    levels: torch.Tensor,
    guard: int,
    inside: float | None = None,
    blocks: int = LEVEL_BLOCKS,
    keep: torch.Tensor | None = None,
) -> float:
    """How much further normal windows the level Gaussian was not fitted on lie from it: the 99th percentile
    of each time block's level term under a Gaussian fitted without that block (nor `guard` windows either
    side, which share its readings), over the in-sample 99th percentile; at least 1.

    Why: the Gaussian's mean and full covariance are fitted on the very windows its tail is read from, and
    overlapping windows of a slowly changing process hold few independent levels, so the in-sample tail
    understates what later normal data reads (a small fit's later levels, an operating point the training
    part visited once). `levels` are in time order (windows of one segment after another); `inside`, the
    in-sample 99th percentile where the caller has it already (the level term's tail).
    """
    n = len(levels)
    if n < blocks * (2 * guard + 4):
        return 1.0  # too few windows to leave a block out and still fit the rest
    if inside is None:
        mean, precision = _level_gaussian(levels, keep)
        inside = float(torch.quantile(_level_distance(levels, mean, precision), TAIL_QUANTILE))
    outside = []
    for block in range(blocks):
        low, high = block * n // blocks, (block + 1) * n // blocks
        rest = torch.cat([levels[: max(0, low - guard)], levels[min(n, high + guard) :]])
        block_mean, block_precision = _level_gaussian(rest, keep)
        outside.append(_level_distance(levels[low:high], block_mean, block_precision))
    beyond = float(torch.quantile(torch.cat(outside), TAIL_QUANTILE))
    return max(1.0, beyond / max(inside, MIN_TERM_SCALE))


def _change_band(changes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lower and upper band of the newest steps' mean absolute change per channel, and where the lower
    band applies (a channel that sits flat at times in training cannot be called stuck).

    A channel that never changed in training has no upper band either: its band would be the 1e-6 floor,
    and any later movement, however small, a burst: a change of 0.001 scored about 190, thresholds sit near
    10 (fitted on SMD machine-1-6's first 500 rows, channels constant there were the top channel of 88% of
    the rows flagged among the file's later normal ones). Its movements are judged by the level and
    reconstruction terms, which grow with their size, and the agent's operating-range warning names them.
    """
    low_q, high_q = CHANGE_BAND_QUANTILES
    low = torch.quantile(changes, low_q, dim=0) / CHANGE_BAND_MARGIN
    upper = torch.quantile(changes, high_q, dim=0)
    high = torch.where(
        upper > FLAT_CHANGE, torch.clamp(upper * CHANGE_BAND_MARGIN, min=MIN_TERM_SCALE), NO_UPPER_BAND
    )
    check = (low > FLAT_CHANGE).float()
    return torch.where(check > 0, low, torch.ones_like(low)), high, check


def measure_scales(
    terms: ScoreTerms,
    sample: npt.NDArray[np.float32],
    normaliser: Normaliser,
    weights: ScoreWeights,
    residual_floor: float,
    sample_stride: int = 1,
    level_tail: str = "out_of_sample",
    holdout: npt.NDArray[np.float32] | None = None,
) -> ScorerModule:
    """The scorer module for `terms`, every scale and tail measured on the raw training windows `sample`
    (every `sample_stride`-th training window, in time order); the level term's tail is its out-of-sample
    one (`level_generalisation`). With the raw `holdout` windows, channels whose level drifts out of the
    training range (`drifting_level_channels`) are left out of the level term."""
    normalised = _network_layout(sample, normaliser)
    with torch.no_grad():
        outputs = [terms(normalised[i : i + _BATCH]) for i in range(0, len(normalised), _BATCH)]
    residual = torch.cat([o[0] for o in outputs])
    feat = torch.cat([o[1] for o in outputs])
    latent = torch.cat([o[2] for o in outputs])
    channel = floored_residual_scale(torch.quantile(residual.mean(dim=2), 0.5, dim=0), residual_floor)
    step_floor = max(float(channel.mean()) * residual_floor, MIN_TERM_SCALE)
    step = torch.clamp(residual.median(dim=0).values, min=step_floor)
    level_weights = newest_step_weights(sample.shape[1], weights.level_half_life_steps)
    levels = recent_level(normalised, level_weights)
    held_out = None
    if holdout is not None and len(holdout):
        held_out = recent_level(_network_layout(holdout, normaliser), level_weights)
    drifting = drifting_level_channels(levels, held_out)
    keep = ~drifting
    left_out = tuple(int(c) for c in torch.nonzero(drifting).flatten())
    if left_out:  # the fit names them once (`assemble.level_left_out`): every member and fold lands here
        log.debug("level term: channel(s) %s left out (drifting out of the training range)", list(left_out))
    level_mean, level_precision = _level_gaussian(levels, keep)
    change_steps = min(weights.variability_steps, sample.shape[1] - 1)
    low, high, check = _change_band(mean_abs_change(normalised, change_steps))
    scales = TermScales(
        channel_residual=channel,
        step_residual=step,
        feature_residual=max(float(torch.quantile(feat, 0.5)), MIN_TERM_SCALE),
        level_mean=level_mean,
        level_precision=level_precision,
        change_low=low,
        change_high=high,
        change_check=check,
        level_left_out=left_out,
    )
    distance = LatentDistance.fit(latent) if weights.latent > 0 else None
    module = ScorerModule(
        terms,
        torch.from_numpy(normaliser.mean),
        torch.from_numpy(normaliser.scale),
        scales,
        weights,
        distance,
    ).eval()
    module.tails = _tails(module, sample)
    if level_tail == "in_sample":
        return module
    guard = -(-sample.shape[1] // max(sample_stride, 1))  # sampled windows sharing readings with a block edge
    generalisation = level_generalisation(levels, guard, inside=module.tails["level"], keep=keep)
    module.tails["level"] *= generalisation
    log.info(
        "level term: out-of-sample tail %.2fx the in-sample one (%d time blocks)",
        generalisation,
        LEVEL_BLOCKS,
    )
    return module


def _tails(module: ScorerModule, sample: npt.NDArray[np.float32]) -> dict[str, float]:
    """q_k: each term's 99th percentile on the training windows (summed over channels where per channel)."""
    sums: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for i in range(0, len(sample), _BATCH):
            parts = module.term_parts(torch.from_numpy(np.ascontiguousarray(sample[i : i + _BATCH])))
            for name, values in parts.items():
                sums.setdefault(name, []).append(values.sum(dim=1) if values.dim() == 2 else values)
    tails = dict.fromkeys(TERMS, 1.0)
    for name, chunks in sums.items():
        if name == "variability":
            continue  # squared e-folds outside the training band: already on a fixed scale
        tails[name] = max(float(torch.quantile(torch.cat(chunks), TAIL_QUANTILE)), MIN_TERM_SCALE)
    return tails
