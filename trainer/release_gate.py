"""The release gate's ratio: how far the recent terms must reach before a high window score counts.

Why: every term that reads the whole window (reconstruction mean, critic features) stays high for a full
window length after a fault has ended, because the fault is still inside the window. On SMD 80 % of our
false alarms (and of PCA T-squared's) sat within one window after a labelled anomaly's end. Gating the
score by the terms that read the newest steps (local residual, recent level, recent variability) lets such
a window go as soon as its newest steps read normal, while a fault that is still there keeps both high.

Each part gets its own threshold by the bundle's own rule on the training part (holdout and, where the
configuration calibrates on them, training windows); the ratio of the two puts the recent part on the full
score's scale, so min(full, ratio * recent) crosses the full score's threshold only where both parts cross
their own. The bundle's threshold is the ungated score's own, by the same rule (`trainer.checks`), so
a window is flagged only where the full score crosses its usual threshold and the newest steps cross theirs:
the gate only takes alarms away. Two other rules were measured and not kept: calibrating on the gated scores
alone spent the saved false alarms elsewhere (TEP's threshold fell by a tenth, its false alarms before the
faults' onset rose from 0.011 to 0.018), and the higher of the two calibrations let a gated calibration
that read higher than the ungated one (cross-fit folds rescaled by gated medians, which the gate moves
unevenly: NAB ambient_temperature 9.5 against 6.3) take recall away. No labels and no test data are read.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from trainer.calibrate import calibrate, evenly_spaced, quietly
from trainer.config import TrainConfig
from trainer.scorer_graph import MIN_TERM_SCALE, MeanScorer, ScorerModule
from trainer.windows import WindowSets

log = logging.getLogger(__name__)

_BATCH = 512


def full_and_recent(
    scorer: ScorerModule, windows: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The ungated score and its recent terms' part, per window."""
    full, recent = [], []
    with torch.no_grad():
        for start in range(0, len(windows), _BATCH):
            contributions, recent_part = scorer.weighted_parts(
                torch.from_numpy(windows[start : start + _BATCH])
            )
            full.append(contributions.sum(dim=1).double().numpy())
            recent.append(recent_part.sum(dim=1).double().numpy())
    return np.concatenate(full), np.concatenate(recent)


def _threshold(
    holdout: npt.NDArray[np.float64], train: npt.NDArray[np.float64] | None, config: TrainConfig
) -> float:
    score = config.score
    with quietly():
        return calibrate(
            holdout, score.false_alarm_budget, score.calibration, score.pot_initial_quantile, train
        ).value


def release_ratio(scorer: ScorerModule, windows: WindowSets, config: TrainConfig) -> float | None:
    """t_full / t_recent on this scorer's training part, or None where the gate is off or has no part to
    read (score.release_gate false, or the chosen weights leave the recent terms out)."""
    if not config.score.release_gate or not scorer.has_recent_terms:
        return None
    full_holdout, recent_holdout = full_and_recent(scorer, windows.holdout)
    full_train = recent_train = None
    if config.score.uses_training_windows:
        full_train, recent_train = full_and_recent(scorer, evenly_spaced(windows.train))
    t_full = _threshold(full_holdout, full_train, config)
    t_recent = _threshold(recent_holdout, recent_train, config)
    if not (np.isfinite(t_full) and np.isfinite(t_recent)) or t_recent <= MIN_TERM_SCALE:
        return None
    return t_full / t_recent


def gated(scorer: ScorerModule, windows: WindowSets, config: TrainConfig) -> ScorerModule:
    """`scorer` with its release gate measured on `windows` (itself unchanged where the gate is off)."""
    ratio = release_ratio(scorer, windows, config)
    if ratio is None:
        return scorer
    log.info("release gate: score = min(full, %.3g x the newest steps' terms)", ratio)
    return scorer.with_release_ratio(ratio)


def ungated_scores(scorer: nn.Module, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """The full score without the gate: of one scorer, or the mean of a MeanScorer's members'."""
    if isinstance(scorer, MeanScorer):
        members = [member for member in scorer.members if isinstance(member, ScorerModule)]
        mean: npt.NDArray[np.float64] = np.mean(
            [full_and_recent(member, windows)[0] for member in members], axis=0
        )
        return mean
    if not isinstance(scorer, ScorerModule):
        raise TypeError(f"no ungated score for {type(scorer).__name__}")
    return full_and_recent(scorer, windows)[0]


def is_gated(scorer: nn.Module) -> bool:
    """Whether any member of `scorer` carries a release gate."""
    members = scorer.members if isinstance(scorer, MeanScorer) else [scorer]
    return any(getattr(member, "release_ratio", None) is not None for member in members)
