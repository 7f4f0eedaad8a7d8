"""The exported graphs: raw windows in, anomaly score and per-channel contributions out, in one pass.

score = (1 - v) * [(1 - w) * mean_c(rec_c / s_c) + w * feat / s_f] + v * lat / s_l
  rec_c  mean squared reconstruction residual of channel c, x vs G(E(x)), normalised units
  feat   mean squared residual between critic features of x and of G(E(x))
  lat    Mahalanobis distance of the encoder's latent E(x) from the training windows' latents
  s_c,s_f,s_l  the same terms' medians on training windows, so every term reads ~1 on normal data
  w, v   score.feature_weight and score.latent_weight
  x      the normalised window; with model.window_level "remove", minus its own per-channel mean
contributions_c = (1 - v) * (1 - w) * (rec_c / s_c) / C + [(1 - v) * w * feat / s_f + v * lat / s_l] * share_c
  share_c  channel c's part of the normalised reconstruction residual; contributions sum to the score.
With model.members > 1, score and contributions are the mean of the members' own, each member with its
own networks and scales.
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.networks import Critic, Encoder, Generator, without_level

_EPS = 1e-8
MIN_TERM_SCALE = 1e-6  # no score term is divided by less than this, whatever the data


class ScoreTerms(nn.Module):
    """Un-normalised terms per window: reconstruction per channel [b, C], feature [b], latent [b, L]."""

    def __init__(
        self, encoder: Encoder, generator: Generator, critic: Critic, remove_level: bool = False
    ) -> None:
        """`remove_level`: score each window without its per-channel mean, as the fit saw it
        (`model.window_level: remove`)."""
        super().__init__()
        self.encoder, self.generator, self.critic = encoder, generator, critic
        self.remove_level = remove_level

    def forward(self, normalised: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`normalised` is [b, C, W]."""
        if self.remove_level:
            normalised = without_level(normalised)
        latent = self.encoder(normalised)
        reconstruction = self.generator(latent)
        rec = (normalised - reconstruction).pow(2).mean(dim=2)
        # One critic pass over real and reconstructed windows together: half the graph, bigger GEMMs.
        features = self.critic.features(torch.cat([normalised, reconstruction], dim=0))
        batch = normalised.shape[0]
        real, fake = features[:batch], features[batch:]
        feat = (real - fake).pow(2).mean(dim=(1, 2))
        return rec, feat, latent


class LatentDistance(nn.Module):
    """Mahalanobis distance from the training windows' latents: the GAN's counterpart of PCA's T-squared.

    The reconstruction residual misses a window the generator can still draw, such as a large but
    well-formed move along the data's main directions; its latent then lies far out in the encoder's range.
    """

    mean: torch.Tensor
    precision: torch.Tensor

    def __init__(self, mean: torch.Tensor, precision: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1).float())
        self.register_buffer("precision", precision.float())

    @classmethod
    def fit(cls, latents: torch.Tensor) -> LatentDistance:
        """Mean and (ridge-regularised) inverse covariance of training latents [n, L]."""
        data = latents.double()
        centred = data - data.mean(dim=0, keepdim=True)
        cov = centred.T @ centred / max(1, len(data) - 1)
        ridge = 1e-6 * max(float(cov.diagonal().mean()), 1e-12)
        precision = torch.linalg.inv(cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype))
        return cls(data.mean(dim=0), precision)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """Squared distance per window [b]."""
        centred = latent - self.mean
        return ((centred @ self.precision) * centred).sum(dim=1)


def floored_residual_scale(medians: torch.Tensor, floor_share: float) -> torch.Tensor:
    """Per-channel residual scales `s_c`: the training medians, none below `floor_share` of their mean.

    Why: a channel the model reconstructs almost exactly (a constant, or one that barely moved in training)
    would otherwise turn rounding noise, or a small harmless shift in deployment, into the whole score.
    """
    floor = max(float(medians.mean()) * floor_share, MIN_TERM_SCALE)
    return torch.clamp(medians, min=floor)


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
        latent: tuple[LatentDistance, float, float] | None = None,
    ) -> None:
        """`latent` is (distance, its median on training windows, latent_weight); None leaves it out."""
        super().__init__()
        self.terms = terms
        self.latent_distance = latent[0] if latent else None
        self.latent_scale = float(latent[1]) if latent else 1.0
        self.latent_weight = float(latent[2]) if latent else 0.0
        self.register_buffer("mean", mean.reshape(1, 1, -1).float())
        self.register_buffer("scale", scale.reshape(1, 1, -1).float())
        self.register_buffer("channel_residual_scale", channel_residual_scale.reshape(1, -1).float())
        self.feature_residual_scale = float(feature_residual_scale)
        self.feature_weight = float(feature_weight)

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score raw windows."""
        normalised = ((windows - self.mean) / self.scale).transpose(1, 2)
        rec, feat, latent = self.terms(normalised)
        rec_n = rec / self.channel_residual_scale
        feat_n = feat / self.feature_residual_scale
        weight = self.feature_weight
        n_channels = rec_n.shape[1]
        keep = 1.0 - self.latent_weight
        # Window-level terms are spread over channels in proportion to their reconstruction residual.
        shared = keep * weight * feat_n
        if self.latent_distance is not None:
            shared = shared + self.latent_weight * self.latent_distance(latent) / self.latent_scale
        per_channel = keep * (1.0 - weight) * rec_n / n_channels
        share = rec_n / (rec_n.sum(dim=1, keepdim=True) + _EPS)
        contributions = per_channel + shared.unsqueeze(1) * share
        return per_channel.sum(dim=1) + shared, contributions


class MeanScorer(nn.Module):
    """Several fits' scorer modules in one graph: the mean of their scores and of their contributions.

    Why: fits that differ only in their seed disagree most on rare windows, which is where thresholds sit;
    their mean is steadier than any one of them, and one graph keeps the edge's single pass per window.
    """

    def __init__(self, members: list[ScorerModule]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("a mean of scorers needs at least two members")
        self.members = nn.ModuleList(members)

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score raw windows with every member and average."""
        outputs = [member(windows) for member in self.members]
        count = float(len(outputs))
        score = torch.stack([score for score, _ in outputs]).sum(dim=0) / count
        contributions = torch.stack([parts for _, parts in outputs]).sum(dim=0) / count
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
