"""The exported graphs: raw windows in, anomaly score and per-channel contributions out, in one pass.

score = sum_c contributions_c, and every term below is divided by its own 99th percentile on training
windows (q_R, q_L, q_D, q_F, q_Lat), so each reads <= 1 on 99% of normal windows and none drowns the others:
  R_c  reconstruction: mean over steps of (x - G(E(x)))^2 for channel c, over its training median s_c
  L_c  time-local: the same per-step residuals over their per-step training medians s_ct, weighted towards
       the newest step (halving every local_half_life_steps), so the newest readings decide, not the window
  D_c  level: channel c's part of the Mahalanobis distance of the window's recent level per channel (its
       steps weighted towards the newest, halving every level_half_life_steps) from the training windows'
       (the Gaussian of levels), positive parts only
  V_c  variability: the newest variability_steps' mean absolute change outside the band seen in training,
       (relu(ln(d / high)))^2 + (relu(ln(low / d)))^2, in squared e-folds (a stuck sensor, a noise burst)
  F    critic-feature residual between x and G(E(x)); Lat: encoder-latent distance (optional)
contributions_c = w_R R_c / q_R + w_L L_c / q_L + w_D D_c / q_D + w_V V_c
                  + (w_F F / q_F + w_Lat Lat / q_Lat) * share_c
  share_c  channel c's part of the normalised reconstruction residual; contributions sum to the score.
Release gate (score.release_gate, on by default): score = min(sum_c contributions_c, ratio * recent), where
  recent = sum_c (w_L L_c / q_L + w_D D_c / q_D + w_V V_c), the terms that read the newest steps, and ratio
  = t_full / t_recent, each threshold by the bundle's rule on the training part; every contribution is
  scaled alike, so they still sum to the score. A window whose fault has ended but still lies inside it
  keeps a high window-wide residual (R, F) while its newest steps read normal: the gate lets it go. The
  threshold is the ungated score's own, so the gate only takes alarms away.
  x        the normalised window; with model.window_level "remove" the networks see it minus its own
           per-channel mean, and the level term alone judges the means.
With model.members > 1, score and contributions are the mean of the members' own, each member with its
own networks and scales.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from trainer.networks import Critic, Encoder, Generator, without_level

_EPS = 1e-8
MIN_TERM_SCALE = 1e-6  # no score term is divided by less than this, whatever the data
# A reading this many spreads from the training mean saturates: squares of larger values would overflow
# float32 into an infinite score. Far beyond any real excursion, it still scores as extreme.
INPUT_CLIP = 1e4


class ScoreTerms(nn.Module):
    """Un-normalised network terms per window: squared residual per step [b, C, W], feature [b], latent."""

    def __init__(
        self, encoder: Encoder, generator: Generator, critic: Critic, remove_level: bool = False
    ) -> None:
        """`remove_level`: the networks see each window without its per-channel mean, as the fit saw it
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
        residual = (normalised - reconstruction).pow(2)
        # One critic pass over real and reconstructed windows together: half the graph, bigger GEMMs.
        features = self.critic.features(torch.cat([normalised, reconstruction], dim=0))
        batch = normalised.shape[0]
        real, fake = features[:batch], features[batch:]
        feat = (real - fake).pow(2).mean(dim=(1, 2))
        return residual, feat, latent


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


TERMS = ("reconstruction", "local", "level", "variability", "feature", "latent")


@dataclass
class TermScales:
    """Everything the score reads from the training windows, measured once by `measure_scales`."""

    channel_residual: torch.Tensor  # [C] s_c
    step_residual: torch.Tensor  # [C, W] s_ct
    feature_residual: float
    level_mean: torch.Tensor  # [C]
    level_precision: torch.Tensor  # [C, C]
    change_low: torch.Tensor  # [C]; channels with change_check 0 have no lower band (flat in training)
    change_high: torch.Tensor  # [C]
    change_check: torch.Tensor  # [C] 1.0 where a lack of change is judged
    tails: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TERMS, 1.0))  # q_k
    # channels left out of the level term (zero rows and columns of level_precision): drifting out of range
    level_left_out: tuple[int, ...] = ()

    @classmethod
    def unit(cls, channels: int, window_len: int) -> TermScales:
        """Scales of 1 everywhere: for graphs whose cost, not whose values, is measured."""
        ones = torch.ones(channels)
        return cls(
            channel_residual=ones,
            step_residual=torch.ones(channels, window_len),
            feature_residual=1.0,
            level_mean=torch.zeros(channels),
            level_precision=torch.eye(channels),
            change_low=ones,
            change_high=ones,
            change_check=ones,
        )


@dataclass(frozen=True)
class ScoreWeights:
    """w_k of the formula; from score.* in the trainer config."""

    reconstruction: float = 1.0
    local: float = 1.0
    level: float = 1.0
    variability: float = 4.0
    feature: float = 1.0
    latent: float = 0.0
    local_half_life_steps: float = 3.0
    level_half_life_steps: float = 8.0
    variability_steps: int = 16


def newest_step_weights(window_len: int, half_life: float) -> torch.Tensor:
    """[W] weights summing to 1 that halve every `half_life` steps back from the newest step."""
    age = torch.arange(window_len - 1, -1, -1, dtype=torch.float32)
    weights = torch.pow(0.5, age / half_life)
    return weights / weights.sum()


def recent_level(normalised: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """[b, C]: each channel's level, its steps weighted by `weights` (newest_step_weights)."""
    return (normalised * weights).sum(dim=2)


def mean_abs_change(normalised: torch.Tensor, steps: int) -> torch.Tensor:
    """[b, C]: mean |x_t - x_t-1| over the newest `steps` changes of each channel."""
    recent = normalised[:, :, -(steps + 1) :]
    return (recent[:, :, 1:] - recent[:, :, :-1]).abs().mean(dim=2)


class ScorerModule(nn.Module):
    """Raw windows [b, W, C] -> (score [b], contributions [b, C]); the contract's scorer graph."""

    mean: torch.Tensor
    scale: torch.Tensor
    channel_residual_scale: torch.Tensor
    step_residual_scale: torch.Tensor
    step_weights: torch.Tensor
    level_weights: torch.Tensor
    level_mean: torch.Tensor
    level_precision: torch.Tensor
    change_low: torch.Tensor
    change_high: torch.Tensor
    change_check: torch.Tensor

    def __init__(
        self,
        terms: ScoreTerms,
        mean: torch.Tensor,
        scale: torch.Tensor,
        scales: TermScales,
        weights: ScoreWeights,
        latent_distance: LatentDistance | None = None,
    ) -> None:
        """`latent_distance` is fitted on training latents; None leaves the latent term out."""
        super().__init__()
        self.terms = terms
        self.weights = weights
        self.term_scales = scales
        self.latent_distance = latent_distance if weights.latent > 0 else None
        self.register_buffer("mean", mean.reshape(1, 1, -1).float())
        self.register_buffer("scale", scale.reshape(1, 1, -1).float())
        self.register_buffer("channel_residual_scale", scales.channel_residual.reshape(1, -1, 1).float())
        self.register_buffer("step_residual_scale", scales.step_residual.unsqueeze(0).float())
        window_len = scales.step_residual.shape[1]
        self.register_buffer("step_weights", newest_step_weights(window_len, weights.local_half_life_steps))
        self.register_buffer("level_weights", newest_step_weights(window_len, weights.level_half_life_steps))
        self.register_buffer("level_mean", scales.level_mean.reshape(1, -1).float())
        self.register_buffer("level_precision", scales.level_precision.float())
        self.register_buffer("change_low", scales.change_low.reshape(1, -1).float())
        self.register_buffer("change_high", scales.change_high.reshape(1, -1).float())
        self.register_buffer("change_check", scales.change_check.reshape(1, -1).float())
        self.feature_residual_scale = float(scales.feature_residual)
        self.tails = dict(scales.tails)
        self.change_steps = min(weights.variability_steps, window_len - 1)
        # score.release_gate (trainer.release_gate): t_full / t_recent, set once the weights are chosen
        self.release_ratio: float | None = None

    def reweighted(self, weights: ScoreWeights) -> ScorerModule:
        """The same networks and scales with other weights (the automatic choice measures once, then picks).

        The half-lives and variability steps shape the terms themselves, so they must stay as measured.
        """
        shaping = ("local_half_life_steps", "level_half_life_steps", "variability_steps")
        if any(getattr(weights, k) != getattr(self.weights, k) for k in shaping):
            raise ValueError("reweighting keeps the measured half-lives and variability steps")
        if weights.latent > 0 and self.latent_distance is None:
            raise ValueError("this scorer was measured without the latent term")
        scales = dataclasses.replace(self.term_scales, tails=dict(self.tails))
        module = ScorerModule(self.terms, self.mean, self.scale, scales, weights, self.latent_distance)
        return module.eval()

    def term_parts(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each term before weights and tails: per channel [b, C] or per window [b]."""
        normalised = torch.clamp((windows - self.mean) / self.scale, -INPUT_CLIP, INPUT_CLIP).transpose(1, 2)
        residual, feat, latent = self.terms(normalised)
        reconstruction = residual.mean(dim=2, keepdim=True) / self.channel_residual_scale
        local = (residual / self.step_residual_scale * self.step_weights).sum(dim=2)
        centred = recent_level(normalised, self.level_weights) - self.level_mean
        level = torch.relu((centred @ self.level_precision) * centred)
        change = mean_abs_change(normalised, self.change_steps)
        excess = torch.relu(torch.log((change + _EPS) / self.change_high)).pow(2)
        floor = self.change_low * 0.05 + _EPS
        deficit = torch.relu(torch.log(self.change_low / (change + floor))).pow(2) * self.change_check
        parts = {
            "reconstruction": reconstruction.squeeze(2),
            "local": local,
            "level": level,
            "variability": excess + deficit,
            "feature": feat / self.feature_residual_scale,
        }
        if self.latent_distance is not None:
            parts["latent"] = self.latent_distance(latent)
        return parts

    def weighted_parts(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ungated per-channel contributions [b, C] and the recent terms' part of them (local, level,
        variability) [b, C]."""
        parts = self.term_parts(windows)
        w, q = self.weights, self.tails
        recent = (
            parts["local"] * (w.local / q["local"])
            + parts["level"] * (w.level / q["level"])
            + parts["variability"] * w.variability
        )
        per_channel = parts["reconstruction"] * (w.reconstruction / q["reconstruction"]) + recent
        shared = parts["feature"] * (w.feature / q["feature"])
        if "latent" in parts:
            shared = shared + parts["latent"] * (w.latent / q["latent"])
        # Window-level terms are spread over channels in proportion to their reconstruction residual.
        rec = parts["reconstruction"]
        share = rec / (rec.sum(dim=1, keepdim=True) + _EPS)
        return per_channel + shared.unsqueeze(1) * share, recent

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score raw windows."""
        contributions, recent = self.weighted_parts(windows)
        if self.release_ratio is not None:
            # The release gate: min(score, ratio * recent), every contribution scaled alike.
            full = contributions.sum(dim=1)
            gated = torch.minimum(full, recent.sum(dim=1) * self.release_ratio)
            contributions = contributions * (gated / (full + _EPS)).unsqueeze(1)
        return contributions.sum(dim=1), contributions

    @property
    def has_recent_terms(self) -> bool:
        """Whether any of the terms that read the newest steps carries weight (the gate needs one)."""
        return self.weights.local > 0 or self.weights.level > 0 or self.weights.variability > 0

    def with_release_ratio(self, ratio: float | None) -> ScorerModule:
        """The same scorer gated by `ratio` (None: ungated)."""
        module = self.reweighted(self.weights)  # a copy on the same networks and scales, ungated
        module.release_ratio = ratio
        return module


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
