"""A GAN epoch makes as many updates on a few hundred rows as on a large file (`gan_steps_per_epoch`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import trainer.fit as fit_module
from trainer.config import FitConfig, ModelConfig
from trainer.fit import fit_networks, gan_steps_per_epoch
from trainer.validation_signal import GenerationQuality

MODEL = ModelConfig(window_len=16, latent_dim=4, width=4)


def _windows(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=(count, 2, 1))
    return (np.sin(np.arange(16) / 3 + phase) + 0.1 * rng.standard_normal((count, 2, 16))).astype(np.float32)


def _critic_steps(monkeypatch: pytest.MonkeyPatch, train_windows: int, fit: FitConfig) -> int:
    """Critic updates one GAN fit makes on `train_windows` windows (counted at the critic's loss)."""
    calls = [0]
    forward = fit_module._CriticObjective.forward

    def counted(self: torch.nn.Module, *args: object, **kwargs: object) -> object:
        calls[0] += 1
        return forward(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fit_module._CriticObjective, "forward", counted)
    # two epochs of tiny networks decide nothing about collapse; a restart would count its steps too
    monkeypatch.setattr(
        fit_module, "generation_quality", lambda *a, **k: GenerationQuality(mmd=0.1, diversity_ratio=1.0)
    )
    fit_networks(_windows(train_windows, 0), _windows(32, 1), MODEL, fit)
    return calls[0]


def test_a_small_fit_makes_as_many_critic_steps_per_epoch_as_a_large_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fit = FitConfig(epochs=2, encoder_epochs=1, batch_size=16, max_train_windows=512, seed=5)
    expected = fit.epochs * gan_steps_per_epoch(fit)
    assert expected == 64
    # 40 windows make 3 batches of 16 in a pass: the epoch draws them again up to a full epoch's steps
    assert _critic_steps(monkeypatch, 40, fit) == expected
    assert _critic_steps(monkeypatch, 600, fit) == expected  # capped at max_train_windows, as before


def test_every_window_is_drawn_in_a_small_epoch() -> None:
    fit = FitConfig(batch_size=16, max_train_windows=512)
    batches = fit_module._batches(40, fit, np.random.default_rng(0), min_steps=gan_steps_per_epoch(fit))
    drawn = np.concatenate(batches)
    assert len(batches) == 32 and all(len(batch) == 16 for batch in batches)
    assert set(drawn.tolist()) == set(range(40))
    assert np.bincount(drawn).min() >= 12  # whole passes in new orders, not one window over and over


def test_a_small_window_cap_keeps_the_old_floor_of_steps() -> None:
    # quick benchmark fits cap an epoch at 256 windows: 4 batches of 64, which collapsed every seed
    assert (
        gan_steps_per_epoch(FitConfig(max_train_windows=256, batch_size=64)) == fit_module.MIN_STEPS_PER_EPOCH
    )
    assert gan_steps_per_epoch(FitConfig()) == 48
