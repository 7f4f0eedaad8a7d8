"""The two window_level fits of an automatic choice: when they run side by side, and that doing so changes a
fit's time and nothing else."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import trainer.side_by_side as side_by_side_module
from tests.unit.small_windows import first_and_last_windows
from trainer.auto_level import fit_levels, level_workers
from trainer.config import TrainConfig
from trainer.distributed import SINGLE, World
from trainer.errors import QualityGateError
from trainer.provenance import seed_everything


def _config(threads: int) -> TrainConfig:
    """Small networks that do not collapse on the test's data (as in test_cross_fit's side-by-side test)."""
    return TrainConfig.model_validate(
        {
            "model": {"window_len": 16, "latent_dim": 8, "width": 16},
            "fit": {
                "epochs": 6,
                "encoder_epochs": 1,
                "seed": 3,
                "lr": 1e-3,
                "critic_lr": 1e-3,
                "threads": threads,
            },
        }
    )


def test_levels_fit_side_by_side_only_where_there_are_two_to_fit_threads_and_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(side_by_side_module, "usable_cores", lambda: 2)
    assert level_workers(_config(threads=2), SINGLE, variants=2) == 2
    assert level_workers(_config(threads=1), SINGLE, variants=2) == 1  # fit-assets' workers, the tests
    assert level_workers(_config(threads=2), SINGLE, variants=1) == 1  # window_level set: nothing to choose
    assert level_workers(_config(threads=2), World(rank=0, size=2), variants=2) == 1  # torchrun: in step
    no_budget = _config(threads=2).model_copy(deep=True)
    no_budget.fit.time_budget_s = 0.0
    assert level_workers(no_budget, SINGLE, variants=2) == 1  # 0: the configured level alone
    monkeypatch.setattr(side_by_side_module, "usable_cores", lambda: 1)
    assert level_workers(_config(threads=2), SINGLE, variants=2) == 1


def test_levels_fitted_side_by_side_are_the_fits_made_one_after_the_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two spawned workers of one thread each against the same two fits here at one thread: both levels
    come back, the configured one first, with every weight and every epoch's figures equal to the bit.
    A worker that fitted the wrong level, lost its seed or came back out of order would fail it."""
    window_len = 16
    rng = np.random.default_rng(2)
    rows = np.sin(np.arange(300)[:, None] / 4 + np.array([0.0, 1.5])) + 0.1 * rng.standard_normal((300, 2))
    rows[:, 0] += np.linspace(0.0, 2.0, 300)  # a level that moves, so the two handlings fit differently
    sets = first_and_last_windows(rows, window_len, train=240, holdout=30)
    threads = torch.get_num_threads()
    try:
        seed_everything(3, 1)
        here = fit_levels(sets, _config(threads=1), SINGLE, started=time.perf_counter())
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(side_by_side_module, "usable_cores", lambda: 2)  # two workers on any machine
    assert level_workers(_config(threads=2), SINGLE, variants=2) == 2
    side_by_side = fit_levels(sets, _config(threads=2), SINGLE, started=time.perf_counter())
    assert [f.config.model.window_level for f in side_by_side.fitted] == ["remove", "keep"]
    assert [f.config.model.window_level for f in here.fitted] == ["remove", "keep"]
    assert side_by_side.not_fitted is None
    for ours, theirs in zip(side_by_side.fitted, here.fitted, strict=True):
        assert ours.fit_seconds > 0
        for mine, other in zip(ours.members, theirs.members, strict=True):
            assert mine.history == other.history and mine.best_epoch == other.best_epoch
            for net in ("generator", "critic", "encoder"):
                got, want = getattr(mine, net).state_dict(), getattr(other, net).state_dict()
                assert all(torch.equal(got[key], want[key]) for key in want), net
    generators = [f.members[0].generator.state_dict() for f in side_by_side.fitted]
    assert not all(torch.equal(generators[0][k], generators[1][k]) for k in generators[0])  # two fits


def test_a_level_refused_in_its_worker_stops_the_fit_with_the_quality_gates_own_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The collapse gate's refusal crosses the process boundary as the same error and message, so the CLI
    still ends it as one line with exit code 2. Networks this small collapse in every attempt here."""
    rng = np.random.default_rng(2)
    rows = np.sin(np.arange(300)[:, None] / 4 + np.array([0.0, 1.5])) + 0.1 * rng.standard_normal((300, 2))
    sets = first_and_last_windows(rows, 16, train=240, holdout=30)
    config = TrainConfig.model_validate(
        {
            "model": {"window_len": 16, "latent_dim": 4, "width": 8},
            "fit": {"epochs": 3, "encoder_epochs": 1, "seed": 5, "threads": 2},
        }
    )
    monkeypatch.setattr(side_by_side_module, "usable_cores", lambda: 2)
    with pytest.raises(QualityGateError, match="collapsed in every epoch"):
        fit_levels(sets, config, SINGLE, started=time.perf_counter())
