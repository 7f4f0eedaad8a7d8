"""The exported graphs: raw windows in, anomaly score and per-channel contributions out, in one pass.

score = (1 - w) * mean_c(rec_c / s_c) + w * feat / s_f
  rec_c  mean squared reconstruction residual of channel c, x vs G(E(x)), normalised units
  feat   mean squared residual between critic features of x and of G(E(x))
  s_c,s_f  the same residuals' medians on training windows, so both terms read ~1 on normal data
contributions_c = (1 - w) * (rec_c / s_c) / C + w * (feat / s_f) * share_c, share_c = channel c's part of
the normalised reconstruction residual; contributions sum to the score.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.networks import Critic, Encoder, Generator

_EPS = 1e-8


class ScoreTerms(nn.Module):
    """Un-normalised residuals per window: reconstruction per channel [b, C] and feature [b]."""

    def __init__(self, encoder: Encoder, generator: Generator, critic: Critic) -> None:
        super().__init__()
        self.encoder, self.generator, self.critic = encoder, generator, critic

    def forward(self, normalised: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`normalised` is [b, C, W]."""
        reconstruction = self.generator(self.encoder(normalised))
        rec = (normalised - reconstruction).pow(2).mean(dim=2)
        # One critic pass over real and reconstructed windows together: half the graph, bigger GEMMs.
        features = self.critic.features(torch.cat([normalised, reconstruction], dim=0))
        batch = normalised.shape[0]
        real, fake = features[:batch], features[batch:]
        feat = (real - fake).pow(2).mean(dim=(1, 2))
        return rec, feat


class ScorerModule(nn.Module):
    """Raw windows [b, W, C] -> (score [b], contributions [b, C]); the contract's scorer graph."""

    mean: torch.Tensor
    scale: torch.Tensor
    channel_residual_scale: torch.Tensor

    def __init__(
        self,
        terms: ScoreTerms,
        mean: torch.Tensor,
        scale: torch.Tensor,
        channel_residual_scale: torch.Tensor,
        feature_residual_scale: float,
        feature_weight: float,
    ) -> None:
        super().__init__()
        self.terms = terms
        self.register_buffer("mean", mean.reshape(1, 1, -1).float())
        self.register_buffer("scale", scale.reshape(1, 1, -1).float())
        self.register_buffer("channel_residual_scale", channel_residual_scale.reshape(1, -1).float())
        self.feature_residual_scale = float(feature_residual_scale)
        self.feature_weight = float(feature_weight)

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score raw windows."""
        normalised = ((windows - self.mean) / self.scale).transpose(1, 2)
        rec, feat = self.terms(normalised)
        rec_n = rec / self.channel_residual_scale
        feat_n = feat / self.feature_residual_scale
        weight = self.feature_weight
        n_channels = rec_n.shape[1]
        score = (1.0 - weight) * rec_n.mean(dim=1) + weight * feat_n
        share = rec_n / (rec_n.sum(dim=1, keepdim=True) + _EPS)
        contributions = (1.0 - weight) * rec_n / n_channels + weight * feat_n.unsqueeze(1) * share
        return score, contributions


class RawGenerator(nn.Module):
    """Latent [b, latent] -> windows [b, W, C] in raw units: the contract's generator graph."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, generator: Generator, mean: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.generator = generator
        self.register_buffer("mean", mean.reshape(1, 1, -1).float())
        self.register_buffer("scale", scale.reshape(1, 1, -1).float())

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Generate raw windows."""
        return self.generator(latent).transpose(1, 2) * self.scale + self.mean
