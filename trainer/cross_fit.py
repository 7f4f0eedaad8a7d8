"""Out-of-sample scores for the training windows (cross-fitting), so a small fit's threshold rests on every
training row and not on a short holdout alone.

Why: the holdout is the tail of the data, so on a small fit it is short. TEP's 500 normal rows leave a
100-row holdout, 37 windows: too few for a false-alarm budget of 1e-3, so the threshold was their maximum,
and how many later normal windows lie above it moved from seed to seed (0.0% to 1.6% of d00_te). The
training windows' own scores cannot stand in: the networks were fitted on them and read 3.7-4.0 where the
holdout reads up to 8.7.

Cross-fitting scores every training window with networks that never saw a reading of it: the training
windows are cut into `folds` blocks in time; for each block, the chosen configuration (its window level,
one member) is fitted on the windows that share no reading with the block, its scales are measured on
those windows, and the block is scored with the fit's chosen weights.

A fold's networks see fewer rows than the full fit's (on TEP a middle fold keeps 127 of 337 windows, the
rest share readings with its block), so they read higher on unseen data than the full fit does: TEP's
fold scores had a median of 8.1 where the full fit's holdout reads 5.4, and a threshold on them lowered
the detection rate from 0.928 to 0.850 (seed 0). So each fold's scores are put on the full fit's scale
by the ratio of the medians both read on the holdout, which neither was fitted on. The tail's shape is
the folds' own; only its scale is matched. Only training windows and the holdout are read: no label and
no test data.

A fold whose fit reads the holdout more than `MAX_SCALE_GAP` times higher or lower than the full fit is not
a smaller copy of it but a different model, and its block's scores are left out. On NAB's
`iio_us-east-1_i-a2eb1cd9_NetworkIn` two folds read the holdout 14x and 37x the full fit's, and with them
the threshold was 284 against 4.6 in sample: a bundle that would never alarm. That series' folds read
0.027-0.073 over three seeds; the 104 other fold fits of those NAB runs read 0.15-2.6, TEP's 0.42-0.69.

A fold whose generator the collapse gate refuses in every attempt is left out the same way, and the bundle
is still built: no fold's networks are shipped, so a fold that cannot be fitted costs the threshold some
windows, never the user the bundle. SMD machine-2-1 fitted on its first 400 rows was refused whole where
the full fit passed: a fold of 67 windows reached diversity 0.19-0.24 in its three attempts (the gate is
0.25), still rising at the last epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from torch import nn

from trainer.auto_score import WeightChoice, scorer_for
from trainer.config import TrainConfig
from trainer.distributed import SINGLE
from trainer.errors import QualityGateError
from trainer.export import torch_scores
from trainer.members import fit_members
from trainer.release_gate import ungated_scores
from trainer.scorer_graph import MIN_TERM_SCALE, ScoreWeights
from trainer.side_by_side import run_side_by_side, share
from trainer.windows import WindowSets

log = logging.getLogger(__name__)

MIN_FOLD_TRAIN_WINDOWS = 64  # a fold fit on fewer windows than this says more about its size than the data
MAX_SCALE_GAP = 10.0  # a fold fit further than this from the full fit on the holdout (either way) is left out


@dataclass(frozen=True, slots=True)
class CrossFit:
    """The out-of-fold scores (time order) and their scale factors, or why there are none. The seconds they
    cost go to the log and into the bundle's fit_seconds, not here: validation holds what a refit with the
    same seed reproduces."""

    scores: npt.NDArray[np.float32] | None
    folds: int
    skipped: str | None
    scale_factors: tuple[float | None, ...] = ()  # per fold: full fit's holdout median / the fold's
    # (None: the fold's generator collapsed in every attempt, so it has no scores)

    @property
    def left_out(self) -> tuple[int, ...]:
        """The folds (from 1) whose scores are left out: their fits are no smaller copies of the full fit."""
        return tuple(
            fold for fold, factor in enumerate(self.scale_factors, start=1) if not _comparable(factor)
        )

    def as_dict(self) -> dict[str, object]:
        """validation.cross_fit in bundle.json."""
        return {
            "folds": self.folds,
            "windows": 0 if self.scores is None else len(self.scores),
            "skipped": self.skipped,
            "scale_factors": [None if factor is None else round(factor, 4) for factor in self.scale_factors],
            "left_out_folds": list(self.left_out),
        }


def _comparable(factor: float | None) -> bool:
    """A fold fit within MAX_SCALE_GAP of the full fit on the holdout, either way (module docstring)."""
    return factor is not None and 1 / MAX_SCALE_GAP <= factor <= MAX_SCALE_GAP


def comparable_blocks(
    parts: list[npt.NDArray[np.float32]], factors: list[float | None]
) -> npt.NDArray[np.float32] | None:
    """The blocks' rescaled scores, in time order, of the folds whose fits are smaller copies of the full
    fit, or None when no fold's is."""
    kept = [part for part, factor in zip(parts, factors, strict=True) if _comparable(factor)]
    return np.concatenate(kept).astype(np.float32) if kept else None


def fold_blocks(count: int, folds: int, guard: int) -> list[tuple[slice, npt.NDArray[np.intp]]]:
    """For each of `folds` contiguous blocks of `count` windows: the block, and the indices of the windows
    outside it that share no reading with it (`guard` windows either side of the block do)."""
    indices = np.arange(count)
    blocks = []
    for fold in range(folds):
        low, high = fold * count // folds, (fold + 1) * count // folds
        outside = (indices <= low - guard - 1) | (indices >= high + guard)
        blocks.append((slice(low, high), indices[outside]))
    return blocks


def sharing_guard(config: TrainConfig) -> int:
    """Training windows either side of a block that share a reading with it (window_len / stride - 1)."""
    return math.ceil(config.model.window_len / config.fit.train_stride) - 1


def reason_to_skip(windows: WindowSets, config: TrainConfig) -> str | None:
    """None when this fit should cross-fit; else why not, for the record.

    The holdout decides: a holdout of at least 1 / budget windows can show the budget's exceedances
    itself, so cross-fitting buys little there and would cost `folds` more fits on data that are large.
    The data and the settings decide, never how long a fit took: a time rule made the bundle depend on the
    machine's load (round 40: beside three other jobs the labelled pump protocol's 400-row fits skipped it,
    thresholds 3.4-3.8 and a false-alarm rate of 0.324 on later normal rows, against 5.5-8.8 and 0.063
    cross-fitted; seven of nine NAB realAWSCloudwatch fits skipped it under load). What the folds cost is
    said instead (`overrun_warning`).
    """
    folds = config.score.cross_fit_folds
    budget = config.score.false_alarm_budget
    if folds < 2:
        return "score.cross_fit_folds is below 2"
    if not config.score.uses_training_windows:
        return "score.calibrate_on is holdout: thresholds from the holdout alone"
    if len(windows.holdout) * budget >= 1.0:
        return f"the holdout's {len(windows.holdout)} windows cover the budget of {budget:g}"
    blocks = fold_blocks(len(windows.train), folds, sharing_guard(config))
    smallest = min(len(outside) for _, outside in blocks)
    if smallest < MIN_FOLD_TRAIN_WINDOWS:
        return (
            f"a fold would train on {smallest} windows (< {MIN_FOLD_TRAIN_WINDOWS}): too few rows for "
            f"{folds} folds of {config.model.window_len}-row windows"
        )
    return None


def overrun_warning(windows: WindowSets, config: TrainConfig, member_fit_s: float) -> str | None:
    """What cross-fitting will cost past fit.time_budget_s, for the log; None when it fits the budget.

    Each fold costs about a whole fit (a GAN epoch is a number of steps, whatever the windows), and
    fold_workers of them run at once.
    """
    folds = config.score.cross_fit_folds
    needed = member_fit_s * math.ceil(folds / fold_workers(config, folds))
    if needed <= config.fit.time_budget_s:
        return None
    return (
        f"cross-fitted calibration: {folds} fold fits take about {needed:.0f} s, past fit.time_budget_s "
        f"({config.fit.time_budget_s:.0f} s). The holdout's {len(windows.holdout)} windows cannot show a "
        f"false-alarm budget of {config.score.false_alarm_budget:g}, so the threshold needs them; "
        "score.cross_fit_folds: 0 skips them (the threshold then rests on the holdout and the training "
        "windows' in-sample scores)"
    )


@dataclass(frozen=True)
class FoldJob:
    """One fold's fit: what a spawned worker process needs (all of it pickles)."""

    fold: int  # from 1
    folds: int
    windows: WindowSets  # the training windows that share no reading with the block, and the holdout
    block: npt.NDArray[np.float32]  # the windows this fold scores
    config: TrainConfig
    weights: ScoreWeights | None  # the chosen score weights; None: the scorer's own


@dataclass(frozen=True)
class FoldOutcome:
    """What one fold's fit read: the holdout's median and its block's scores, or why it was refused."""

    holdout_median: float
    block_scores: npt.NDArray[np.float32]
    refused: str | None = None


def fold_workers(config: TrainConfig, folds: int) -> int:
    """Fold fits run side by side, as many as fit.threads and the usable cores allow.

    Why: the folds are independent fits of the same length (a GAN epoch is a number of steps), so on a small
    fit they cost most of its time: a 400-row, 8-channel fit (fit_speed's pump data) spent 153 of 239 s in
    four folds, one after the other. One torch thread per fit is about as fast as two on these small
    networks (a 400-row GAN fit: 8.0 and 8.9 s against 9.2 and 6.9), and two folds at once took the folds
    to 105 s (TEP's: 227 -> 164 s) on 2 cores.
    """
    return share(folds, config.fit.threads)[0]


def fit_fold(job: FoldJob) -> FoldOutcome:
    """The fold's fit, scored on the holdout and on its block with the full fit's chosen weights."""
    config, fold_windows = job.config, job.windows
    one_member = config.model_copy(update={"model": config.model.model_copy(update={"members": 1})})
    log.info("cross-fit: fold %d of %d, fitting on %d windows", job.fold, job.folds, len(fold_windows.train))
    try:
        nets = fit_members(fold_windows, one_member, SINGLE)[0]
    except QualityGateError as err:
        return FoldOutcome(float("nan"), np.empty(0, np.float32), str(err))
    scorer = scorer_for(nets, fold_windows, config)
    if job.weights is not None:
        scorer = scorer.reweighted(job.weights)
    median = float(np.median(torch_scores(scorer, fold_windows.holdout)))
    return FoldOutcome(median, torch_scores(scorer, job.block))


def run_folds(jobs: list[FoldJob], workers: int, threads: int) -> list[FoldOutcome]:
    """Every fold's outcome in fold order: here, one after the other, or in `workers` spawned processes of
    `threads` torch threads each (trainer/side_by_side.py)."""
    if workers <= 1:
        return [fit_fold(job) for job in jobs]

    def finished(job: FoldJob, seconds: float) -> None:
        log.info(
            "cross-fit: fold %d of %d fitted (%.0f s since the folds began)", job.fold, job.folds, seconds
        )

    return run_side_by_side(fit_fold, jobs, (workers, threads), jobs[0].config.fit.seed, finished)


def cross_fitted_scores(
    windows: WindowSets,
    config: TrainConfig,
    choice: WeightChoice | None,
    full_fit: nn.Module,
    member_fit_s: float,
) -> CrossFit:
    """Every training window scored by a fit that never saw its readings, on the scale of `full_fit` (the
    graph the bundle serves; see the module's docstring), or the reason this fit does not cross-fit."""
    folds = config.score.cross_fit_folds
    skipped = reason_to_skip(windows, config)
    if skipped is not None:
        log.info("cross-fitted calibration skipped: %s", skipped)
        return CrossFit(None, folds, skipped)
    overrun = overrun_warning(windows, config, member_fit_s)
    if overrun is not None:
        log.warning(overrun)
    started = time.perf_counter()
    # the folds score without the release gate, as the threshold does (trainer.release_gate)
    full_median = float(np.median(ungated_scores(full_fit, windows.holdout)))
    blocks = fold_blocks(len(windows.train), folds, sharing_guard(config))
    jobs = [
        FoldJob(
            fold=fold,
            folds=folds,
            windows=dataclasses.replace(windows, train=windows.train[outside]),
            block=windows.train[block],
            config=config,
            weights=None if choice is None else choice.weights,
        )
        for fold, (block, outside) in enumerate(blocks, start=1)
    ]
    # The workers share fit.threads (one each at the default 2), never more than the cores.
    workers, per_worker = share(folds, config.fit.threads)
    if workers > 1:
        log.info(
            "cross-fit: %d folds on %s windows, fitted side by side, %d at a time",
            folds,
            ", ".join(str(len(job.windows.train)) for job in jobs),
            workers,
        )
    outcomes = run_folds(jobs, workers, per_worker)
    parts: list[npt.NDArray[np.float32]] = []
    factors: list[float | None] = []
    for job, outcome in zip(jobs, outcomes, strict=True):
        if outcome.refused is not None:
            log.warning("cross-fit: fold %d left out, its fit was refused: %s", job.fold, outcome.refused)
            parts.append(np.empty(0, np.float32))
            factors.append(None)
            continue
        factor = full_median / max(outcome.holdout_median, MIN_TERM_SCALE)
        factors.append(factor)
        parts.append(factor * outcome.block_scores)
    seconds = time.perf_counter() - started
    scores = comparable_blocks(parts, factors)
    none_left = (
        "every fold's fit was refused or read the holdout more than "
        f"{MAX_SCALE_GAP:g}x away from the full fit's"
    )
    result = CrossFit(scores, folds, none_left if scores is None else None, tuple(factors))
    if result.left_out:
        log.warning(
            "cross-fit: fold(s) %s left out: refused, or their fits read the holdout more than %gx away "
            "from the full fit's (scale factors %s), so their scores do not stand for the full fit's",
            ", ".join(map(str, result.left_out)),
            MAX_SCALE_GAP,
            ", ".join("refused" if factor is None else f"{factor:.3g}" for factor in factors),
        )
    if scores is not None:
        log.info(
            "cross-fit: %d training windows scored out of sample in %.0f s (median %.3g, max %.3g, on the "
            "full fit's scale by factors %s)",
            len(scores),
            seconds,
            float(np.median(scores)),
            float(scores.max()),
            ", ".join("-" if factor is None else f"{factor:.2f}" for factor in factors),
        )
    return result
