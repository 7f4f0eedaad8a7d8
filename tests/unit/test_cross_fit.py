"""Cross-fitted calibration: which training windows each fold fits on, when a fit cross-fits, and what the
out-of-sample scores do to the threshold."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest
import torch

import trainer.cross_fit as cross_fit_module
import trainer.fit as fit_module
import trainer.side_by_side as side_by_side_module
from tests.unit.small_windows import first_and_last_windows
from trainer.auto_score import score_weights, scorer_for
from trainer.calibrate import calibrate
from trainer.config import TrainConfig
from trainer.cross_fit import (
    MAX_SCALE_GAP,
    MIN_FOLD_TRAIN_WINDOWS,
    CrossFit,
    FoldJob,
    comparable_blocks,
    cross_fitted_scores,
    fold_blocks,
    fold_workers,
    overrun_warning,
    reason_to_skip,
    run_folds,
    sharing_guard,
)
from trainer.distributed import SINGLE
from trainer.fit import TrainedNets
from trainer.members import fit_members
from trainer.provenance import seed_everything
from trainer.validation_signal import GenerationQuality, generation_quality
from trainer.windows import WindowSets, fit_normaliser, slide


@pytest.mark.parametrize(("count", "folds", "guard"), [(337, 4, 63), (1000, 5, 31), (90, 3, 0)])
def test_the_blocks_cover_every_window_once_and_no_fold_trains_on_a_reading_of_its_block(
    count: int, folds: int, guard: int
) -> None:
    blocks = fold_blocks(count, folds, guard)
    scored = np.concatenate([np.arange(count)[block] for block, _ in blocks])
    assert np.array_equal(scored, np.arange(count))  # every window once, in time order
    for block, outside in blocks:
        inside = np.arange(count)[block]
        # Window i holds readings i .. i + guard: none of a training window's readings is in the block's.
        distance = np.abs(outside[:, None] - inside[None, :]).min(axis=1)
        assert distance.min() > guard
        # ... and every window further away than that trains.
        far = [i for i in range(count) if np.abs(inside - i).min() > guard]
        assert np.array_equal(outside, far)


def _window_sets(train: int, holdout: int, window_len: int = 32) -> WindowSets:
    rows = np.random.default_rng(0).normal(size=(train + holdout + 2 * window_len, 2))
    return WindowSets(
        train=np.zeros((train, window_len, 2), dtype=np.float32),
        holdout=np.zeros((holdout, window_len, 2), dtype=np.float32),
        normaliser=fit_normaliser(rows),
        rows_train=train + window_len - 1,
        rows_holdout=holdout + window_len - 1,
    )


def _config(folds: int = 4, time_budget_s: float = 100.0, threads: int = 1) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "model": {"window_len": 32},
            "fit": {"time_budget_s": time_budget_s, "threads": threads},
            "score": {"cross_fit_folds": folds, "false_alarm_budget": 1e-3},
        }
    )


def test_a_short_holdout_cross_fits() -> None:
    assert reason_to_skip(_window_sets(600, 37), _config()) is None


def test_a_holdout_that_covers_the_budget_does_not_cross_fit() -> None:
    reason = reason_to_skip(_window_sets(600, 1000), _config())
    assert reason == "the holdout's 1000 windows cover the budget of 0.001"


def test_a_cross_fit_past_the_time_budget_still_runs_and_the_log_says_what_it_costs() -> None:
    """Whether a fit cross-fits must not depend on how busy the machine was: the same 400-row fit skipped it
    under load (thresholds 3.4-3.8 instead of 5.5-8.8, round 40). The cost past the budget is a warning."""
    sets = _window_sets(600, 37)
    late = _config(time_budget_s=35)
    assert reason_to_skip(sets, late) is None
    # Each fold costs about a whole fit (a GAN epoch is a fixed number of steps), one after the other here.
    warning = str(overrun_warning(sets, late, member_fit_s=10))
    assert warning.startswith("cross-fitted calibration: 4 fold fits take about 40 s, past fit.time_budget_s")
    assert "holdout's 37 windows" in warning and "score.cross_fit_folds: 0 skips them" in warning
    assert overrun_warning(sets, _config(time_budget_s=45), member_fit_s=10) is None
    assert "below 2" in str(reason_to_skip(sets, _config(1)))


def test_a_fit_told_to_calibrate_on_the_holdout_alone_does_not_cross_fit() -> None:
    config = _config()
    holdout_only = config.model_copy(
        update={"score": config.score.model_copy(update={"calibrate_on": "holdout"})}
    )
    assert reason_to_skip(_window_sets(600, 37), config) is None
    reason = reason_to_skip(_window_sets(600, 37), holdout_only)
    assert reason == "score.calibrate_on is holdout: thresholds from the holdout alone"


def test_no_cross_fit_where_a_fold_would_train_on_too_few_windows() -> None:
    # 4 folds of 32-row windows: a middle fold trains on the windows less its block and 31 either side.
    assert reason_to_skip(_window_sets(200, 37), _config(4)) is None  # 200 - 50 - 62 = 88 left
    reason = str(reason_to_skip(_window_sets(140, 37), _config(4)))  # 140 - 35 - 62 = 43 left
    assert reason.startswith("a fold would train on 43 windows")
    assert f"(< {MIN_FOLD_TRAIN_WINDOWS})" in reason and "4 folds of 32-row windows" in reason


def test_out_of_sample_scores_with_a_heavier_tail_set_the_threshold_and_are_counted() -> None:
    rng = np.random.default_rng(5)
    holdout, train = rng.gamma(2.0, size=37), 0.5 * rng.gamma(2.0, size=400)  # in-sample scores read low
    cross_fit = 1.5 * rng.gamma(2.0, size=400)
    without = calibrate(holdout, 1e-3, "pot", 0.9, train_scores=train, block=32)
    with_cf = calibrate(holdout, 1e-3, "pot", 0.9, train_scores=train, block=32, cross_fit_scores=cross_fit)
    assert with_cf.value == with_cf.details["cross_fit_threshold"] > without.value
    assert with_cf.calibration_windows == 837 and with_cf.details["cross_fit_windows"] == 400
    assert with_cf.details["cross_fit_effective_windows"] == pytest.approx(400 / 32)
    # Every named level takes the cross-fitted calibration into account too.
    levels = calibrate(holdout, 1e-3, "pot", 0.9, levels={"warning": 1e-2}, cross_fit_scores=cross_fit)
    alone = calibrate(cross_fit, 1e-2, "pot", 0.9)
    assert levels.levels["warning"].value >= alone.value


def test_a_fold_whose_fit_reads_the_holdout_far_from_the_full_fit_is_left_out() -> None:
    """NAB's iio NetworkIn: two folds read the holdout 14x and 37x the full fit's, and their blocks set a
    threshold of 284 against 4.6 in sample. Folds within MAX_SCALE_GAP either way stay, in time order."""
    parts = [np.full(3, value, dtype=np.float32) for value in (1.0, 2.0, 3.0, 4.0)]
    factors = (0.66, 0.072, 0.027, 1.9)
    assert CrossFit(None, 4, None, factors).left_out == (2, 3)
    scores = comparable_blocks(parts, list(factors))
    assert scores is not None and scores.tolist() == [1.0] * 3 + [4.0] * 3
    edges = (1 / MAX_SCALE_GAP, 1.0, MAX_SCALE_GAP, MAX_SCALE_GAP * 1.01)
    assert CrossFit(None, 4, None, edges).left_out == (4,)
    scores = comparable_blocks(parts, list(edges))
    assert scores is not None and len(scores) == 9
    assert CrossFit(None, 2, None, (0.05, 20.0)).left_out == (1, 2)
    assert comparable_blocks(parts[:2], [0.05, 20.0]) is None


def test_a_fold_whose_generator_collapses_in_every_attempt_is_left_out_and_the_rest_still_calibrate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SMD machine-2-1 on its first 400 rows: one fold's GAN stayed under the collapse gate in all three
    attempts and the whole fit was refused, though no fold's networks are shipped. The fold must be left out
    (recorded as refused, valid JSON) and the other blocks still scored. Real fits throughout; the test only
    decides that the second fold's generator reads as collapsed: a few epochs of tiny nets decide nothing."""
    window_len = 16
    rng = np.random.default_rng(0)
    rows = np.sin(np.arange(360)[:, None] / 3 + np.array([0.0, 1.0])) + 0.1 * rng.standard_normal((360, 2))
    sets = first_and_last_windows(rows, window_len, train=300, holdout=20)
    config = TrainConfig.model_validate(
        {
            "model": {"window_len": window_len, "latent_dim": 4, "width": 4},
            # One thread: the folds run in this process, where the test decides which one collapses.
            "fit": {"epochs": 3, "encoder_epochs": 1, "auto": False, "threads": 1},
            "score": {"cross_fit_folds": 4, "false_alarm_budget": 1e-3},
        }
    )
    collapsing = [False]

    def quality(generated: torch.Tensor, real: torch.Tensor, **kwargs: object) -> GenerationQuality:
        measured = generation_quality(generated, real)
        return GenerationQuality(mmd=measured.mmd, diversity_ratio=0.01 if collapsing[0] else 1.0)

    monkeypatch.setattr(fit_module, "generation_quality", quality)
    full_fit = scorer_for(fit_members(sets, config, SINGLE)[0], sets, config)
    calls: list[int] = []

    def second_fold_collapses(*args: Any, **kwargs: Any) -> list[TrainedNets]:
        calls.append(len(calls) + 1)
        collapsing[0] = len(calls) == 2
        return fit_members(*args, **kwargs)

    monkeypatch.setattr(cross_fit_module, "fit_members", second_fold_collapses)
    result = cross_fitted_scores(sets, config, None, full_fit, member_fit_s=1.0)
    assert calls == [1, 2, 3, 4]
    assert result.scale_factors[1] is None and all(
        f is not None for i, f in enumerate(result.scale_factors) if i != 1
    )
    assert result.left_out == (2,)
    blocks = fold_blocks(300, 4, sharing_guard(config))
    kept = sum(len(np.arange(300)[block]) for index, (block, _) in enumerate(blocks) if index != 1)
    assert result.scores is not None and len(result.scores) == kept
    record = json.loads(json.dumps(result.as_dict(), allow_nan=False))
    assert (
        record["scale_factors"][1] is None and record["left_out_folds"] == [2] and record["windows"] == kept
    )


def test_folds_fitted_side_by_side_read_exactly_what_they_read_one_after_the_other() -> None:
    """Two spawned workers of one thread each against the same folds here at one thread: every fold's
    holdout median and block scores agree to the bit, in fold order, so running folds side by side changes
    a fit's time and nothing else. Folds that lost part of their job on the way to a worker, or came back
    out of order, would fail it."""
    window_len = 16
    rng = np.random.default_rng(1)
    rows = np.sin(np.arange(300)[:, None] / 4 + np.array([0.0, 1.5])) + 0.1 * rng.standard_normal((300, 2))
    windows = slide(rows, window_len, 1)
    normaliser = fit_normaliser(rows)
    config = TrainConfig.model_validate(
        {
            "model": {"window_len": window_len, "latent_dim": 8, "width": 16},
            "fit": {
                "epochs": 10,
                "encoder_epochs": 1,
                "auto": False,
                "seed": 3,
                "lr": 1e-3,
                "critic_lr": 1e-3,
            },
            "score": {"cross_fit_folds": 3},
        }
    )
    weights = dataclasses.replace(score_weights(config), local=0.5, level=0.0, variability=2.0)
    blocks = fold_blocks(240, 3, sharing_guard(config))
    jobs = [
        FoldJob(
            fold=fold,
            folds=3,
            windows=WindowSets(
                train=windows[:240][outside],
                holdout=windows[-20:],
                normaliser=normaliser,
                rows_train=240 + window_len - 1,
                rows_holdout=20 + window_len - 1,
            ),
            block=windows[:240][block],
            config=config,
            weights=weights,
        )
        for fold, (block, outside) in enumerate(blocks, start=1)
    ]
    threads = torch.get_num_threads()
    try:
        seed_everything(3, 1)
        here = run_folds(jobs, workers=1, threads=1)
    finally:
        torch.set_num_threads(threads)
    side_by_side = run_folds(jobs, workers=2, threads=1)
    assert len(side_by_side) == 3
    for ours, theirs, job in zip(side_by_side, here, jobs, strict=True):
        assert ours.refused is None and theirs.refused is None
        assert ours.holdout_median == theirs.holdout_median
        assert len(ours.block_scores) == len(job.block)
        assert np.array_equal(ours.block_scores, theirs.block_scores)
    assert len({outcome.holdout_median for outcome in here}) == 3  # three different fits, not one copied


def test_the_cost_estimate_counts_folds_that_run_side_by_side_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(side_by_side_module, "usable_cores", lambda: 2)
    config = _config(time_budget_s=35, threads=2)
    assert fold_workers(config, 4) == 2
    assert overrun_warning(_window_sets(600, 37), config, member_fit_s=10) is None  # 2 rounds of 10 s
    assert fold_workers(_config(threads=8), 4) == 2  # never more workers than cores
    monkeypatch.setattr(side_by_side_module, "usable_cores", lambda: 16)
    assert fold_workers(_config(threads=8), 4) == 4  # never more workers than folds
