"""model.window_level chosen per fit, by the rule that chooses the score's weights.

Why two fits: the level handling changes what the networks learn, so unlike the weights it cannot be read
off one fit scored several ways. With fit.auto and window_level left unset, the fit trains the default
(remove) first and keep second, when the first fit leaves room for another as long within
fit.time_budget_s; where fit.threads and the cores allow, both fit at once instead (`level_workers`).
Each fit's weights are chosen as before (auto_score). The level whose best candidate
detects the most anomalies injected into the holdout, at its own threshold by the bundle's rule, wins,
unless the one fitted first is within the difference's sampling error (`RecallGap`): then the first. A level
whose scores do not generalise is passed over first: its
winning weights, thresholded on the training part alone, flag more of the later holdout than
LATER_FA_FACTOR times the false-alarm budget and times the other level's rate (see `level_winner`).
Only training windows, the holdout and anomalies injected into it are read: no label and no test data.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats
from torch import nn

from trainer.assemble import assemble_scorer
from trainer.auto_score import TIE_MARGIN, CandidateEvidence, WeightChoice, carried_over, choice_block
from trainer.config import TrainConfig
from trainer.distributed import SINGLE, World, rank_zero_decides
from trainer.fit import TrainedNets
from trainer.members import fit_members
from trainer.scorer_graph import ScorerModule
from trainer.side_by_side import run_side_by_side, share
from trainer.windows import WindowSets

log = logging.getLogger(__name__)

LEVELS = ("remove", "keep")
Hits = npt.NDArray[np.bool_]  # [kinds, windows]: which injected windows a candidate flags


@dataclass(frozen=True, slots=True)
class FittedLevel:
    """One level handling's networks (every member) and what they cost."""

    config: TrainConfig
    members: list[TrainedNets]
    fit_seconds: float


@dataclass(frozen=True, slots=True)
class LevelFits:
    """Every level fitted, and why the other was not when the budget ran short."""

    fitted: list[FittedLevel]  # the configured level first: its config is the fit's own
    not_fitted: str | None

    def seconds_per_member(self, level: str) -> float:
        """What one member's fit of `level` took: the cost of one more fit of it."""
        fitted = next(f for f in self.fitted if f.config.model.window_level == level)
        return fitted.fit_seconds / max(1, len(fitted.members))


@dataclass(frozen=True, slots=True)
class Assembled:
    """The winning level's config, networks and graph, and the choice that made it."""

    config: TrainConfig
    members: list[TrainedNets]
    scorer: nn.Module
    member_scorers: list[ScorerModule]
    choice: WeightChoice | None


def level_is_free(config: TrainConfig) -> bool:
    """Whether this fit chooses model.window_level: fit.auto and no window_level in the config."""
    return config.fit.auto and "window_level" not in config.model.model_fields_set


def with_level(config: TrainConfig, level: str) -> TrainConfig:
    """The config with model.window_level set to `level`."""
    model = config.model.model_copy(update={"window_level": level})
    return config.model_copy(update={"model": model})


def fit_levels(windows: WindowSets, config: TrainConfig, world: World, started: float) -> LevelFits:
    """The configured level's networks, then the other level's while the time budget allows; both at
    once where fit.threads and the cores allow (`level_workers`)."""
    free = level_is_free(config)
    first = config.model.window_level
    variants = [config] + ([with_level(config, level) for level in LEVELS if level != first] if free else [])
    if level_workers(config, world, len(variants)) > 1:
        return LevelFits(_fit_side_by_side(windows, variants), None)
    fitted: list[FittedLevel] = []
    not_fitted = None
    for variant in variants:
        level = variant.model.window_level
        if fitted:
            elapsed = time.perf_counter() - started
            needed = fitted[-1].fit_seconds
            if not rank_zero_decides(world, elapsed + needed <= config.fit.time_budget_s):
                not_fitted = (
                    f"window_level {level} not fitted: {elapsed:.0f} s spent, another fit takes about "
                    f"{needed:.0f} s, fit.time_budget_s is {config.fit.time_budget_s:.0f}"
                )
                log.warning("%s (raise the budget, or set model.window_level to choose)", not_fitted)
                break
        if free:
            log.info("window_level %s: fitting (%d of %d)", level, len(fitted) + 1, len(variants))
        fit_started = time.perf_counter()
        members = fit_members(windows, variant, world)
        fitted.append(FittedLevel(variant, members, time.perf_counter() - fit_started))
    return LevelFits(fitted, not_fitted)


def level_workers(config: TrainConfig, world: World, variants: int) -> int:
    """How many level fits run at once: one per level, as many as fit.threads and the usable cores allow,
    and one at a time under torchrun (every rank fits every level in step with the others).

    Why: like the cross-fit's folds, the two levels are independent fits of the same length, and two of
    one torch thread each finish sooner than the same two one after the other on two threads
    (trainer/side_by_side.py). Side by side, the second level no longer waits for the first, so
    fit.time_budget_s does not gate it: it costs the difference between one fit's time and both at once.
    A budget of 0 still means the configured level alone, as it does one after the other.
    """
    if variants < 2 or world.size > 1 or config.fit.time_budget_s <= 0:
        return 1
    return share(variants, config.fit.threads)[0]


@dataclass(frozen=True, slots=True)
class LevelJob:
    """One level's fit, as a spawned worker takes it (all of it pickles)."""

    windows: WindowSets
    config: TrainConfig

    @property
    def level(self) -> str:
        return self.config.model.window_level


def fit_level(job: LevelJob) -> FittedLevel:
    """One level's members, timed: what a spawned worker runs."""
    fit_started = time.perf_counter()
    members = fit_members(job.windows, job.config, SINGLE)
    return FittedLevel(job.config, members, time.perf_counter() - fit_started)


def _fit_side_by_side(windows: WindowSets, variants: list[TrainConfig]) -> list[FittedLevel]:
    """Every level's fit at once, in spawned workers that share fit.threads; the configured level first."""
    workers, threads = split = share(len(variants), variants[0].fit.threads)
    jobs = [LevelJob(windows, variant) for variant in variants]
    log.info(
        "window_level %s: fitting side by side, %d at a time, %d torch thread(s) each",
        " and ".join(job.level for job in jobs),
        workers,
        threads,
    )

    def tag_of(job: LevelJob) -> str:
        return f"window_level {job.level}"

    def finished(job: LevelJob, seconds: float) -> None:
        log.info("window_level %s fitted (%.0f s since the fits began)", job.level, seconds)

    return run_side_by_side(fit_level, jobs, split, variants[0].fit.seed, finished, tag_of)


def assemble_best(fits: LevelFits, windows: WindowSets) -> Assembled:
    """Each level's graph with its chosen weights; the level whose best candidate detects the most."""
    options = []
    for fitted in fits.fitted:
        scorer, member_scorers, choice = assemble_scorer(fitted.members, windows, fitted.config)
        options.append(Assembled(fitted.config, fitted.members, scorer, member_scorers, choice))
    if not level_is_free(fits.fitted[0].config) or options[0].choice is None:
        return options[0]
    best: dict[str, float] = {o.config.model.window_level: _best_recall(o.choice) for o in options}
    later: dict[str, float | None] = {o.config.model.window_level: _later_rate(o.choice) for o in options}
    hits: dict[str, Hits] = {o.config.model.window_level: _best_hits(o.choice) for o in options}
    block = choice_block(windows, options[0].config.model.window_len)

    def margin(top: str, other: str) -> float:
        return recall_gap(hits[top], hits[other], block).margin

    leader = max(best, key=lambda level: best[level])  # its lead is recorded whether or not the rule needs it
    gaps = [
        {"better": leader, "other": level, **recall_gap(hits[leader], hits[level], block).as_dict()}
        for level in best
        if level != leader
    ]
    budget = options[0].config.score.false_alarm_budget
    chosen = level_winner(best, later, budget, margin)
    winner = next(option for option in options if option.config.model.window_level == chosen)
    record: dict[str, object] = {
        "winner": chosen,
        "best_mean_recall": best,
        "later_false_alarm_rate": later,
        "recall_gaps": gaps,
        "fit_seconds": {f.config.model.window_level: round(f.fit_seconds, 1) for f in fits.fitted},
        "not_fitted": fits.not_fitted,
        "rule": f"among levels whose winning weights, at a threshold from the training part, flag at most "
        f"{LATER_FA_FACTOR:g}x the budget or {LATER_FA_FACTOR:g}x the lowest level's rate of the later "
        f"holdout, the highest mean recall; the first fitted unless it trails by more than {TIE_MARGIN} and "
        f"by more than the one-sided {GAP_CONFIDENCE:g} bound of the paired difference over blocks of "
        "check windows one window long (no bound from fewer than two blocks: the first)",
    }
    log.info(
        "window_level chosen: %s (best mean recall %s, later false alarms %s, gaps %s)",
        chosen,
        best,
        later,
        gaps,
    )
    return dataclasses.replace(winner, choice=_merged(options, winner, record))


# Later holdout flagged above this times the budget and the other level's rate: scores did not generalise.
LATER_FA_FACTOR = 3.0


def level_winner(
    recall: dict[str, float],
    later: dict[str, float | None],
    budget: float,
    margin: Callable[[str, str], float] = lambda top, other: TIE_MARGIN,
) -> str:
    """The level to serve, from each level's best mean recall and its winner's later false-alarm rate (None:
    not measured), in the order the levels were fitted. A level is passed over when its later rate exceeds
    LATER_FA_FACTOR times both the budget and the lowest level's rate; among the rest, recall decides: the
    first level whose recall is within `margin(top, level)` of the top level's.

    Why the false alarms: recall on injected anomalies rewards a score that rises anywhere, and a level whose
    networks fit the training part closely does. The demo's pump data chose `keep` by mean recall, 0.793
    against 0.751, while its threshold from the training part flagged 0.53% of the later holdout against
    `remove`'s 0%, at a budget of 0.1%; its clean simulated devices then drew 1.7 false alarms per
    device-hour, where the `remove` bundle drew none. Why against the lowest rate too: where both levels
    miss the budget (TEP's 100 held-out rows flag 100% for both; AWS ec2_network_in flags 0.38% for `remove`
    and 47% for `keep`), the one that misses it by far is the one to pass over, not both.
    """
    measured = [rate for rate in later.values() if rate is not None]
    limit = LATER_FA_FACTOR * max(budget, min(measured, default=budget))
    eligible = [level for level in recall if (rate := later.get(level)) is None or rate <= limit]
    top = max(eligible, key=lambda level: recall[level])
    return next(
        level for level in eligible if level == top or recall[level] >= recall[top] - margin(top, level)
    )


GAP_CONFIDENCE = 0.95  # one-sided: the later level must beat the first by more than its sampling error


@dataclass(frozen=True, slots=True)
class RecallGap:
    """How far one level's injected-anomaly recall leads another's, and how sure that lead is.

    Why blocks: the check windows overlap (held-out windows start every few rows), so neighbours share most
    of their readings and mostly succeed or fail together; only windows one window length apart are about
    independent looks. Why paired: both levels score the same windows with the same injected anomalies, so
    the difference's spread is that of per-window differences, far smaller than two recalls' own.
    Why it matters: on TEP (100 held-out rows) the levels differed by 0.022, about one window per kind,
    and which one won followed the CPU's rounding from machine to machine (rounds 28-29).
    """

    difference: float  # mean recall of the better level minus the other's
    standard_error: float | None  # over blocks; None with fewer than two
    blocks: int
    margin: float  # the lead the better level needs: inf where no bound can be had

    def as_dict(self) -> dict[str, object]:
        """JSON for bundle.json (an unbounded margin is null)."""
        return {
            "difference": round(self.difference, 4),
            "standard_error": None if self.standard_error is None else round(self.standard_error, 4),
            "independent_blocks": self.blocks,
            "margin": None if np.isinf(self.margin) else round(self.margin, 4),
        }


def recall_gap(better: npt.NDArray[np.bool_], other: npt.NDArray[np.bool_], block_windows: int) -> RecallGap:
    """The paired gap between two [kinds, windows] hit matrices over the same injected windows, and the
    margin it must exceed: TIE_MARGIN, or the one-sided GAP_CONFIDENCE t bound over blocks of
    `block_windows` consecutive windows, whichever is larger."""
    per_window = better.mean(axis=0, dtype=np.float64) - other.mean(axis=0, dtype=np.float64)
    difference = float(per_window.mean()) if per_window.size else 0.0
    blocks = len(per_window) // max(1, block_windows)
    if blocks < 2:
        return RecallGap(difference, None, blocks, float("inf"))
    means = per_window[: blocks * block_windows].reshape(blocks, -1).mean(axis=1)
    error = float(means.std(ddof=1) / np.sqrt(blocks))
    bound = float(stats.t.ppf(GAP_CONFIDENCE, blocks - 1)) * error
    return RecallGap(difference, error, blocks, max(TIE_MARGIN, bound))


def _best_candidate(choice: WeightChoice | None) -> CandidateEvidence:
    """The candidate with the highest mean recall among those the weight choice compared (`carried_over`):
    a candidate it passed over cannot win the level either."""
    assert choice is not None  # fit.auto: every level has a choice
    return max(carried_over(choice.candidates), key=lambda c: c.mean_recall)


def _best_recall(choice: WeightChoice | None) -> float:
    return _best_candidate(choice).mean_recall if choice is not None else 0.0


def _best_hits(choice: WeightChoice | None) -> Hits:
    assert choice is not None
    return choice.hits[_best_candidate(choice).name]


def _later_rate(choice: WeightChoice | None) -> float | None:
    """The winning weights' later false-alarm rate (None when the fit measured none)."""
    if choice is None:
        return None
    return next(c for c in choice.candidates if c.name == choice.winner).holdout_rate_at_train_threshold


def _merged(options: list[Assembled], winner: Assembled, record: dict[str, object]) -> WeightChoice:
    """One choice over every level's candidates, each named level/weights."""
    choices = [(option.config.model.window_level, option.choice) for option in options]
    candidates = [
        dataclasses.replace(candidate, name=f"{level}/{candidate.name}")
        for level, choice in choices
        if choice is not None
        for candidate in choice.candidates
    ]
    own = winner.choice
    assert own is not None  # fit.auto: every level has a choice
    return WeightChoice(
        winner=f"{winner.config.model.window_level}/{own.winner}",
        weights=own.weights,
        candidates=candidates,
        fixed=own.fixed,
        window_level=record,
    )
