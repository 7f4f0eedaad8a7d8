"""The white noise a generator's smooth windows lack, measured against the training rows."""

from __future__ import annotations

import numpy as np

from trainer.level_process import missing_noise


def test_missing_noise_restores_the_step_to_step_variance_of_the_real_rows() -> None:
    rng = np.random.default_rng(0)
    time = np.linspace(0, 6 * np.pi, 64)
    shape = np.stack([np.sin(time + phase) for phase in rng.uniform(0, 6, 400)])
    smooth = np.stack([shape, 2 * shape], axis=2).astype(np.float32)  # [400, 64, 2]: the generator's
    real = smooth + rng.normal(0, [0.3, 0.0], smooth.shape).astype(np.float32)  # noise on channel 0 only
    noise = missing_noise(real, smooth)
    assert abs(noise[0] - 0.3) < 0.02, noise
    assert noise[1] == 0.0
    topped_up = smooth + rng.normal(0, noise, smooth.shape).astype(np.float32)
    real_steps = np.diff(real, axis=1).var(axis=(0, 1))
    assert np.allclose(np.diff(topped_up, axis=1).var(axis=(0, 1)), real_steps, rtol=0.05)


def test_a_generator_rougher_than_the_data_gets_no_noise() -> None:
    rng = np.random.default_rng(1)
    rough = rng.normal(0, 1, (50, 64, 3)).astype(np.float32)
    assert (missing_noise(0.5 * rough, rough) == 0).all()
