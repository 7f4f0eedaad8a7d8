"""Training configuration: one pydantic model, read from YAML with flags on top."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.bundle import ALERT_LEVEL
from edge_agent.yaml_config import load_yaml_model

_LEVEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


class DataConfig(BaseModel):
    """How CSV files become channels and windows."""

    model_config = ConfigDict(extra="forbid")

    columns: list[str] | None = Field(
        None, description="channels to use, by header name; default all numeric"
    )
    max_gap_rows: int = Field(5, ge=0, description="longest run of missing rows/cells that is interpolated")
    on_long_gap: Literal["error", "split"] = Field(
        "error", description="a longer gap is an error, or splits the series into segments"
    )
    holdout_fraction: float = Field(
        0.2, gt=0, lt=0.9, description="tail of each file kept for validation and threshold calibration"
    )
    spread_floor: float = Field(
        0.0,
        ge=0,
        le=10,
        description="no channel is normalised by less than this share of the median channel's std, so a "
        "channel that barely moved in training cannot amplify a small shift; 0 is a plain z-score",
    )


class ModelConfig(BaseModel):
    """Shapes of the networks."""

    model_config = ConfigDict(extra="forbid")

    window_len: int = Field(64, ge=16, le=4096, description="readings per window; a multiple of 8")
    hop_len: int = Field(1, ge=1, description="readings between two scored windows on the edge")
    latent_dim: int = Field(32, ge=2, le=1024, description="size of the generator's latent vector")
    width: int = Field(
        32,
        ge=4,
        le=512,
        description="channels of the first conv layer; deeper ones double. 16 scores about 2x faster and "
        "fits about 0.7x as long, but its detection did not hold up (benchmarks/REPORT.md, round 27)",
    )
    window_level: Literal["keep", "remove"] = Field(
        "remove",
        description=(
            "remove: the networks see each window without its own per-channel mean, in the fit and inside "
            "the scorer graph, and the score's level term judges the means instead (a Gaussian of the "
            "training windows' levels), so unseen combinations of normal levels do not alarm; keep: the "
            "networks model levels and shapes together. Unset with fit.auto, the fit tries remove, then "
            "keep within fit.time_budget_s, and keeps the one that detects more injected anomalies"
        ),
    )
    members: int = Field(
        1,
        ge=1,
        le=8,
        description=(
            "networks fitted with seeds fit.seed, fit.seed + 1, ...; the scorer graph averages their scores "
            "in one pass, so one unlucky fit cannot decide the bundle (costs members times the fit and the "
            "scoring work)"
        ),
    )

    @property
    def removes_window_level(self) -> bool:
        """Whether the fit and the scorer graph see each window without its own per-channel mean."""
        return self.window_level == "remove"

    @model_validator(mode="after")
    def _window_fits_the_conv_stack(self) -> ModelConfig:
        if self.window_len % 8:
            raise ValueError(
                f"window_len must be a multiple of 8 (three stride-2 stages), got {self.window_len}"
            )
        if self.hop_len > self.window_len:
            raise ValueError("hop_len must not exceed window_len")
        return self


class FitConfig(BaseModel):
    """Optimisation of the GAN (WGAN-GP) and of the encoder (izi_f)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(
        40,
        ge=1,
        description="GAN epochs of max_train_windows / batch_size critic steps each (at least 16), whatever "
        "the data's size (fewer windows are drawn again in new orders: a GAN converges with its updates)",
    )
    encoder_epochs: int = Field(20, ge=1, description="passes for the encoder after the GAN is frozen")
    encoder_patience: int = Field(
        4, ge=1, description="the encoder stops after this many epochs without a better validation loss"
    )
    batch_size: int = Field(64, ge=4)
    train_stride: int = Field(1, ge=1, description="step between training windows")
    max_train_windows: int = Field(
        3072,
        ge=64,
        description="windows per epoch: a cap so large data fit in minutes, and the GAN epoch's length on "
        "small data",
    )
    critic_steps: int = Field(2, ge=1, description="critic updates per generator update (WGAN-GP)")
    gradient_penalty: float = Field(10.0, ge=0)
    penalty_every: int = Field(
        1,
        ge=1,
        description="the gradient penalty on every k-th critic step, k times as heavy (lazy regularisation, "
        "as StyleGAN2 does for R1): k=2 makes a critic step about a third cheaper, but collapsed SMD "
        "machine-1-6's generator, so the default keeps it on every step",
    )
    lr: float = Field(5e-4, gt=0, description="generator learning rate")
    critic_lr: float = Field(5e-4, gt=0, description="critic learning rate (TTUR when it differs from lr)")
    encoder_lr: float = Field(1e-3, gt=0)
    encoder_denoise: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of the encoder's training windows given one injected fault, the clean window "
        "being the target (a denoising encoder: the residual stays where a fault is, so a window whose "
        "fault has ended can score normal); 0: plain izi_f",
    )
    moment_weight: float = Field(
        1.0,
        ge=0,
        description="weight of the generator's moment-matching term (spread, roughness, spectrum per "
        "channel, against the real batch); 0: the critic alone",
    )
    seed: int = Field(0, ge=0)
    auto: bool = Field(
        True,
        description="choose the score's weights and model.window_level per fit from the normal data and "
        "anomalies injected into its holdout (values set in the config are kept); false fits exactly the "
        "configuration given",
    )
    time_budget_s: float = Field(
        240.0,
        ge=0,
        description="seconds the automatic choice may spend: fitted one after the other (fit.threads 1, one "
        "core, torchrun), the other model.window_level is fitted only when the first fit leaves room for a "
        "second as long within this budget; side by side (the default on 2 or more cores) both are; "
        "0: the configured level only. Cross-fitted calibration is not cut by it (score.cross_fit_folds)",
    )
    threads: int = Field(2, ge=1, description="torch CPU threads")


class ScoreConfig(BaseModel):
    """The anomaly score and its threshold."""

    model_config = ConfigDict(extra="forbid")

    reconstruction_weight: float = Field(
        1.0, ge=0, description="weight of the window's mean reconstruction residual (per channel)"
    )
    feature_weight: float = Field(1.0, ge=0, description="weight of the discriminator-feature residual")
    local_weight: float = Field(
        1.0,
        ge=0,
        description="weight of the time-local residual: per-step residuals weighted towards the newest "
        "reading (local_half_life_steps), so a short spike is not diluted by the window",
    )
    local_half_life_steps: float = Field(
        3.0, gt=0, description="the local residual's weights halve every this many steps back from the newest"
    )
    level_weight: float = Field(
        1.0,
        ge=0,
        description="weight of the level distance: Mahalanobis distance of the window's recent level per "
        "channel from the training windows'",
    )
    level_half_life_steps: float = Field(
        8.0,
        gt=0,
        description="the level term's step weights halve every this many steps back from the newest",
    )
    variability_weight: float = Field(
        4.0,
        ge=0,
        description="weight of the variability term: the newest steps' mean absolute change per channel "
        "outside the band seen in training (a stuck sensor, a noise burst), in squared e-folds; a channel "
        "flat all through training has no band, and its movements count in the level and residual terms",
    )
    variability_steps: int = Field(
        16, ge=2, description="newest steps whose changes the variability term reads"
    )
    latent_weight: float = Field(
        0.0,
        ge=0,
        description="weight of the encoder-latent Mahalanobis distance (large moves the generator can draw)",
    )
    residual_floor: float = Field(
        0.05,
        gt=0,
        le=1,
        description="no channel's residual is scaled by less than this share of the mean channel's "
        "training residual, so a channel the model reconstructs almost exactly cannot dominate the score",
    )
    level_tail: Literal["out_of_sample", "in_sample"] = Field(
        "out_of_sample",
        description="the level term's tail: out_of_sample reads it on time blocks the level Gaussian was "
        "fitted without (later normal levels sit further out than the fitted ones); in_sample: round 8's",
    )
    false_alarm_budget: float = Field(
        1e-3, gt=0, lt=0.5, description="fraction of normal windows allowed above the threshold"
    )
    severity_levels: dict[str, float] = Field(
        default_factory=lambda: {"warning": 1e-2, "critical": 1e-4},
        description="further named operating points (name -> false-alarm budget), calibrated by the same "
        "rule; the agent can start alerts at one (decision.level) and names the strictest one an alert's "
        "score reaches",
    )
    calibration: Literal["pot", "quantile"] = Field("pot", description="extreme-value fit or plain quantile")
    pot_initial_quantile: float = Field(0.9, gt=0.5, lt=1, description="POT: scores above this are the tail")
    calibrate_on: Literal["holdout", "holdout_and_train"] = Field(
        "holdout_and_train",
        description="holdout: thresholds from the holdout's scores alone; holdout_and_train: the stricter "
        "of that and the same calibration on the training windows' scores (benchmarks/REPORT.md, round 4)",
    )

    release_gate: bool = Field(
        True,
        description="score = min(full score, ratio x the part of the terms that read the newest steps), "
        "ratio = the two parts' thresholds by this section's rule on the training part, and the threshold "
        "is the full score's own: a window whose fault has ended, and still lies inside it, reads normal "
        "once its newest steps do (most false alarms of windowed detectors trail an ended anomaly); false: "
        "the full score alone (labels that count an event's aftermath, as NAB's wide windows do)",
    )
    cross_fit_folds: int = Field(
        4,
        ge=0,
        le=16,
        description="a holdout of fewer than 1 / false_alarm_budget windows is joined by the training "
        "windows scored out of sample: this many fits of the chosen settings, each on the training windows "
        "that share no reading with one time block, score that block, and the strictest calibration sets "
        "the threshold; up to fit.threads folds fit side by side in worker processes that share fit.threads; "
        "skipped when the holdout covers the budget, when a fold would train on too few windows, or with "
        "calibrate_on: holdout, never for time (the fit warns when the folds run past fit.time_budget_s); "
        "0 or 1: off",
    )

    @model_validator(mode="after")
    def _levels_are_operating_points(self) -> ScoreConfig:
        for name, budget in self.severity_levels.items():
            if not _LEVEL_NAME.fullmatch(name) or name == ALERT_LEVEL:
                raise ValueError(
                    f"severity level {name!r}: use lower-case letters, digits and '_', and not "
                    f"{ALERT_LEVEL!r} (the threshold's own level)"
                )
            if not 0 < budget < 0.5 or budget == self.false_alarm_budget:
                raise ValueError(
                    f"severity level {name!r}: budget {budget} must lie in (0, 0.5) and differ from "
                    f"false_alarm_budget ({self.false_alarm_budget})"
                )
        return self

    @property
    def uses_training_windows(self) -> bool:
        """Whether the threshold also calibrates on the training windows' own scores."""
        return self.calibrate_on == "holdout_and_train"


class QuantizeConfig(BaseModel):
    """INT8 export and the gate it must pass."""

    model_config = ConfigDict(extra="forbid")

    calibration_windows: int = Field(512, ge=16, description="normal windows fed to the INT8 calibrator")
    min_rank_correlation: float = Field(0.95, ge=0, le=1, description="Spearman of INT8 vs FP32 scores")
    min_decision_agreement: float = Field(0.9, ge=0, le=1, description="same alert/no-alert as FP32")
    max_auc_drop: float = Field(0.03, ge=0, le=1, description="synthetic-anomaly AUROC loss allowed")
    max_fp32_torch_error: float = Field(1e-3, gt=0, description="relative score error of ONNX FP32 vs torch")
    generator_layers: Literal["auto", "fp32", "int8"] = Field(
        "auto",
        description="the generator's hidden layers in the INT8 graph. auto: quantised when the fit's check "
        "on held-out windows and injected anomalies shows no loss against keeping them FP32 (about 1.3x "
        "faster scoring); fp32: always kept; int8: always quantised. Its output layer stays FP32",
    )
    on_int8_failure: Literal["refuse_int8", "fail"] = Field(
        "refuse_int8",
        description="refuse_int8: a bundle whose INT8 graph misses the gate ships with that graph marked "
        "refused (with the figures) and the agent serves FP32; fail: the fit fails",
    )


class BundleConfig(BaseModel):
    """What the written bundle carries besides the model."""

    model_config = ConfigDict(extra="forbid")

    sign_key: Path | None = Field(
        None,
        description="Ed25519 private key (PEM, `edge-trainer keygen`): the bundle gets a bundle.sig, which "
        "agents with the public key in trusted_keys require",
    )


class TrainConfig(BaseModel):
    """Everything `edge-trainer fit` needs besides the data path."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    fit: FitConfig = Field(default_factory=FitConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    bundle: BundleConfig = Field(default_factory=BundleConfig)


def load_train_config(
    path: Path | None, overrides: dict[str, dict[str, object]] | None = None
) -> TrainConfig:
    """YAML file (optional) first, then explicit overrides per section; errors name file, line and key."""
    return load_yaml_model(TrainConfig, path, dict(overrides or {}))
