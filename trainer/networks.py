"""The three 1-D convolutional networks: generator G, critic D and encoder E. No I/O, no optimisers.

Windows travel as [batch, channels, time] inside the networks (Conv1d's layout) and are normalised. Three
stride-2 stages take a window of W readings to W/8 positions, so W must be a multiple of 8. No batch norm
anywhere: WGAN-GP's gradient penalty is per sample and batch statistics would couple samples.
"""

from __future__ import annotations

import torch
from torch import nn

NEGATIVE_SLOPE = 0.2


def _down_stack(in_channels: int, width: int) -> nn.Sequential:
    """Three stride-2 convolutions: [b, C, W] -> [b, 2*width, W/8]."""
    return nn.Sequential(
        nn.Conv1d(in_channels, width, kernel_size=5, stride=2, padding=2),
        nn.LeakyReLU(NEGATIVE_SLOPE),
        nn.Conv1d(width, 2 * width, kernel_size=5, stride=2, padding=2),
        nn.LeakyReLU(NEGATIVE_SLOPE),
        nn.Conv1d(2 * width, 2 * width, kernel_size=5, stride=2, padding=2),
        nn.LeakyReLU(NEGATIVE_SLOPE),
    )


class Generator(nn.Module):
    """Latent [b, latent] -> normalised window [b, C, W]."""

    def __init__(self, latent_dim: int, n_channels: int, window_len: int, width: int) -> None:
        super().__init__()
        self.base_len = window_len // 8
        self.base_width = 2 * width
        self.project = nn.Sequential(
            nn.Linear(latent_dim, self.base_width * self.base_len), nn.LeakyReLU(NEGATIVE_SLOPE)
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose1d(2 * width, 2 * width, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.ConvTranspose1d(2 * width, width, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.ConvTranspose1d(width, width, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Conv1d(width, n_channels, kernel_size=5, padding=2),
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Generate normalised windows."""
        hidden = self.project(latent).view(-1, self.base_width, self.base_len)
        return self.upsample(hidden)


class Critic(nn.Module):
    """Window [b, C, W] -> realness [b]; `features` exposes the last conv stage for the feature residual."""

    def __init__(self, n_channels: int, window_len: int, width: int) -> None:
        super().__init__()
        self.body = _down_stack(n_channels, width)
        self.head = nn.Linear(2 * width * (window_len // 8), 1)

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """Intermediate activations [b, 2*width, W/8]: what f-AnoGAN compares."""
        return self.body(windows)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Unbounded critic value (Wasserstein estimate, no sigmoid)."""
        return self.head(self.features(windows).flatten(1)).squeeze(1)


class Encoder(nn.Module):
    """Window [b, C, W] -> latent [b, latent]: a single pass replaces AnoGAN's per-sample latent search."""

    def __init__(self, latent_dim: int, n_channels: int, window_len: int, width: int) -> None:
        super().__init__()
        self.body = _down_stack(n_channels, width)
        self.head = nn.Linear(2 * width * (window_len // 8), latent_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Map windows into the generator's latent space."""
        return self.head(self.body(windows).flatten(1))


def count_parameters(*modules: nn.Module) -> int:
    """Trainable parameters across modules."""
    return sum(p.numel() for module in modules for p in module.parameters())


def without_level(windows: torch.Tensor) -> torch.Tensor:
    """Each window [b, C, W] minus its own per-channel mean (`model.window_level: remove`).

    Why: where a lasting change of level is normal (load steps, deploys, autoscaling), a model of levels
    alarms on every window of the new regime; one of shapes alarms only on the windows that hold the step.
    """
    return windows - windows.mean(dim=2, keepdim=True)
