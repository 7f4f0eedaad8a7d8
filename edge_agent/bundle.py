"""The model bundle contract: manifest schema, file names, and a loader that verifies what it opens.

The trainer writes bundles through this module and the agent reads them through it, so the two can never
disagree on the format. A bundle is a folder holding `bundle.json` plus the ONNX graphs it lists with their
sha256; anything that does not match is refused with a message that says what and where.
"""

from __future__ import annotations

import cmath
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from edge_agent.errors import BundleError
from edge_agent.vocabulary import Precision

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST_NAME = "bundle.json"
SCORER_FP32 = "scorer.onnx"
SCORER_INT8 = "scorer.int8.onnx"
GENERATOR = "generator.onnx"
REQUIRED_MODELS = (SCORER_FP32, SCORER_INT8, GENERATOR)

# Tensor names of the ONNX graphs: part of the contract, used by every backend.
SCORER_INPUT = "windows"  # [batch, window, channels] float32, raw units
SCORER_OUTPUT_SCORE = "score"  # [batch]
SCORER_OUTPUT_CONTRIBUTIONS = "contributions"  # [batch, channels]
GENERATOR_INPUT = "latent"  # [batch, latent]
GENERATOR_OUTPUT = "windows"  # [batch, window, channels] raw units


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalisation(_Strict):
    """Per-channel affine map fitted on training rows only: normalised = (raw - mean) / scale."""

    method: Literal["standard"] = Field(description="z-score with constant channels kept at scale 1")
    mean: list[float] = Field(description="per-channel mean of the training rows, raw units")
    scale: list[float] = Field(
        description="per-channel std of the training rows, floored at the trainer's data.spread_floor times "
        "the median channel's; 1.0 for constant channels"
    )
    low: list[float] | None = Field(None, description="per-channel minimum of the training rows, raw units")
    high: list[float] | None = Field(None, description="per-channel maximum of the training rows, raw units")


class LevelRegime(_Strict):
    """One operating point of the training levels: a pump's duty point, a line's product, a shift."""

    weight: float = Field(ge=0, le=1, description="share of training windows in this regime")
    mean: list[float] = Field(description="per-channel mean level in this regime, normalised units")
    cholesky: list[list[float]] = Field(description="lower Cholesky factor of the levels' covariance in it")
    autocorrelation: list[float] = Field(
        description="per channel, of a window's level with the one lag_rows on, while the regime holds"
    )


class FloorMap(_Strict):
    """One channel's monotone map, piecewise linear in normalised units: the stream's quantiles to the
    training rows' at the same levels, so a floor channel sits on its floor as often as the data do and a
    skewed one reaches its tail, with the order of its values (its shape) kept."""

    channel: int = Field(ge=0, description="index in `channels`")
    source: list[float] = Field(min_length=2, description="the stream's quantiles, rising, normalised units")
    target: list[float] = Field(min_length=2, description="the training rows' quantiles at the same levels")
    isolated_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="for a channel that leaves its floor only in rare isolated readings, the share of "
        "training rows off the floor: the simulator puts the channel on its floor (`target`'s median) and "
        "draws such readings at this rate, apart from the stream (absent: the map decides every reading)",
    )
    isolated_values: list[float] | None = Field(
        None, description="the training rows' off-floor readings, normalised units, that the draws pick from"
    )
    longest_floor_run: int | None = Field(
        None,
        ge=1,
        description="for a floor channel, the most consecutive training rows it sat on its floor (`target`'s "
        "median): the simulator leaves the floor for the nearest value in `target` rather than sit there "
        "longer (absent: no limit)",
    )

    @model_validator(mode="after")
    def _rising(self) -> FloorMap:
        """Finite tables of one length, `source` rising: the simulator interpolates without further checks."""
        if len(self.source) != len(self.target):
            raise ValueError("source and target must be of one length")
        if not all(math.isfinite(value) for value in [*self.source, *self.target]):
            raise ValueError("source and target must hold finite numbers")
        if any(b <= a for a, b in zip(self.source, self.source[1:], strict=False)):
            raise ValueError("source must rise")
        if (self.isolated_rate is None) != (not self.isolated_values):
            raise ValueError("isolated_rate and isolated_values come together")
        if self.isolated_values and not all(math.isfinite(value) for value in self.isolated_values):
            raise ValueError("isolated_values must hold finite numbers")
        return self


class SmoothChannel(_Strict):
    """One channel whose level the walk moves as a second-order process (an AR(2) at the walk's step),
    matched to the levels' autocorrelation at one and two lags: a slow smooth cycle (a daily temperature)
    keeps its slope from one step to the next, where an AR(1) turns at random every step."""

    channel: int = Field(ge=0, description="index in `channels`")
    autocorrelation: list[float] = Field(
        min_length=2,
        max_length=2,
        description="the level's autocorrelation lag_rows and 2 x lag_rows on, as measured (uncapped)",
    )

    @model_validator(mode="after")
    def _a_stationary_second_order_process(self) -> SmoothChannel:
        """Autocorrelations an AR(2) with both roots inside the unit circle and none negative can hold: the
        simulator raises them to fractional powers for its own step without further checks."""
        if second_order_roots(*self.autocorrelation) is None:
            raise ValueError(f"autocorrelation {self.autocorrelation}: no stationary smooth AR(2) has it")
        return self


def second_order_roots(lag_one: float, lag_two: float) -> tuple[complex, complex] | None:
    """The roots (per lag) of the AR(2) whose autocorrelation is `lag_one` and `lag_two` one and two lags
    on (Yule-Walker), or None where no stationary AR(2) has them or a root is negative (an AR(2) that flips
    sign each step, which no finer step can take)."""
    if not (math.isfinite(lag_one) and math.isfinite(lag_two)) or not -1 < lag_one < 1:
        return None
    a1 = lag_one * (1 - lag_two) / (1 - lag_one**2)
    a2 = (lag_two - lag_one**2) / (1 - lag_one**2)
    root = cmath.sqrt(a1 * a1 + 4 * a2)
    roots = ((a1 + root) / 2, (a1 - root) / 2)
    if any(abs(z) >= 1 or (abs(z.imag) < 1e-12 and z.real <= 0) for z in roots):
        return None
    return roots


class LevelProcess(_Strict):
    """How window levels wander in the training data: the simulator's levels.

    With `score.window_level: remove` the generator makes windows without their per-channel level; with
    `keep` it draws levels too, and the simulator takes each window's own level off. Either way the
    simulator adds a level that moves like the training data's (a Gaussian with this mean and covariance,
    autocorrelated from one window to the next), so synthetic streams are not pinned to the global mean
    and do not jump in level where two independently drawn windows meet. (Bundles made before 4 December
    carry it for `remove` only.)
    """

    mean: list[float] = Field(description="per-channel mean of the training windows' means, normalised units")
    cholesky: list[list[float]] = Field(description="lower Cholesky factor of their covariance, normalised")
    lag_rows: int = Field(ge=1, description="rows between the windows whose levels `autocorrelation` relates")
    autocorrelation: list[float] = Field(
        description="per channel, of a window's level with the one lag_rows on"
    )
    noise_sd: list[float] | None = Field(
        None,
        description="per channel, white noise the generator's windows lack, normalised units: half the gap "
        "between the training rows' and the generator's step-to-step variance (older bundles; newer ones "
        "carry `noise_filter`)",
    )
    noise_filter: list[list[float]] | None = Field(
        None,
        description="per channel, FIR taps that shape unit white noise into the power the generator's "
        "windows lack at each frequency, normalised units; the simulator adds it in place of `noise_sd` "
        "(absent in older bundles)",
    )
    noise_mixing: list[list[float]] | None = Field(
        None,
        description="channels x channels, rows scaled to each channel's noise_filter sd and columns to unit "
        "variance: with that scaling taken off, the mix of the channels' white noises each channel's own "
        "noise_filter shapes, so the channels move together in the band their fills cover as the training "
        "rows do (the rows' coherency there, weighted by the fills' gains; the steps' correlation in bundles "
        "made before 5 December 2026) and each keeps its spectrum (absent: each its own)",
    )
    floor_maps: list[FloorMap] | None = Field(
        None,
        description="channels that sit on one value in most training rows, or are far more skewed than the "
        "simulator's stream, each with the map that puts the stream onto the training rows' distribution "
        "(absent: none, or an older bundle)",
    )
    max_rate: list[float] | None = Field(
        None,
        description="per channel, the fastest a window level changed from one row to the next in the "
        "training data (99.9th percentile), normalised units per row: the walk never moves faster "
        "(absent in older bundles: no limit)",
    )
    shape_filter: list[list[float]] | None = Field(
        None,
        description="per channel, FIR taps the simulator runs the generator's shapes through before adding "
        "levels and noise: they damp the frequencies the generator draws with more power than the training "
        "windows hold (absent in older bundles: no filter)",
    )
    smooth_channels: list[SmoothChannel] | None = Field(
        None,
        description="channels whose level the walk moves as a second-order process, each with the two "
        "autocorrelations it is matched to (absent: every channel an AR(1), as older bundles)",
    )
    regimes: list[LevelRegime] | None = Field(
        None,
        description="the levels as a mixture of operating points, where the training data show more than one "
        "(absent: one Gaussian, the top-level mean and cholesky)",
    )
    regime_transition: list[list[float]] | None = Field(
        None,
        description="row i: probability of each regime lag_rows after a window in regime i (with `regimes`)",
    )

    @model_validator(mode="after")
    def _regimes_agree(self) -> LevelProcess:
        """A transition matrix with one row and column per regime, each row a distribution."""
        if (self.regimes is None) != (self.regime_transition is None):
            raise ValueError("regimes and regime_transition come together")
        if self.regimes is not None and self.regime_transition is not None:
            count = len(self.regimes)
            rows = self.regime_transition
            if len(rows) != count or any(len(row) != count for row in rows):
                raise ValueError(f"regime_transition must be {count} x {count}")
            if any(min(row) < 0 or abs(sum(row) - 1.0) > 1e-6 for row in rows):
                raise ValueError("each row of regime_transition must be a probability distribution")
        self._floor_maps_agree()
        self._noise_mixing_agrees()
        smooth = [entry.channel for entry in self.smooth_channels or []]
        if any(channel >= len(self.mean) for channel in smooth) or len(set(smooth)) != len(smooth):
            raise ValueError(f"smooth_channels: channels must be distinct and below {len(self.mean)}")
        return self

    def _noise_mixing_agrees(self) -> None:
        """A square mixing matrix, one row and column per channel, only beside the noise it mixes."""
        mixing, channels = self.noise_mixing, len(self.mean)
        if mixing is None:
            return
        square = len(mixing) == channels and all(len(row) == channels for row in mixing)
        if self.noise_filter is None or not square:
            raise ValueError(f"noise_mixing must be {channels} x {channels}, with noise_filter")

    def _floor_maps_agree(self) -> None:
        """Each map for a channel that exists, at most one per channel."""
        channels = [floor.channel for floor in self.floor_maps or []]
        if any(channel >= len(self.mean) for channel in channels) or len(set(channels)) != len(channels):
            raise ValueError(f"floor_maps: channels must be distinct and below {len(self.mean)}")


class MemberScale(_Strict):
    """One fit's scales inside a scorer graph that averages several fits (model.members > 1)."""

    seed: int = Field(ge=0, description="fit.seed this member's networks were trained with")
    channel_residual_scale: list[float] = Field(description="this member's per-channel residual scale")
    feature_residual_scale: float = Field(gt=0, description="this member's feature residual scale")
    latent_distance_scale: float | None = Field(None, gt=0, description="this member's latent distance scale")
    term_tails: dict[str, float] = Field(
        default_factory=dict, description="this member's q_k: each term's 99th percentile on training windows"
    )


class ScoreDefinition(_Strict):
    """How the scorer graph turns residuals into one anomaly score; documented so users can read scores.

    The top-level scales are the first (or only) fit's; `members` lists every fit when the graph averages
    several.
    """

    formula: str = Field(description="human-readable definition of score and contributions")
    feature_weight: float = Field(ge=0, description="weight of the discriminator-feature residual")
    channel_residual_scale: list[float] = Field(
        description="per-channel reconstruction residual on training windows, used to normalise"
    )
    feature_residual_scale: float = Field(gt=0, description="feature residual on training windows")
    latent_weight: float = Field(0.0, ge=0, description="weight of the encoder-latent distance term")
    latent_distance_scale: float | None = Field(
        None, gt=0, description="latent Mahalanobis distance on training windows (None: term not used)"
    )
    term_weights: dict[str, float] = Field(
        default_factory=dict,
        description="w_k of the formula by term (reconstruction, local, level, variability, feature, "
        "latent); empty in bundles made before the time-local, level and variability terms",
    )
    term_tails: dict[str, float] = Field(
        default_factory=dict, description="q_k: each term's 99th percentile on training windows"
    )
    local_half_life_steps: float | None = Field(None, gt=0, description="the time-local term's half-life")
    variability_steps: int | None = Field(None, ge=2, description="newest steps the variability term reads")
    window_level: Literal["keep", "remove"] = Field(
        "keep",
        description=(
            "remove: the scorer graph subtracts each window's per-channel mean before scoring, so the score "
            "sees shape, not level (a lasting level change alarms only while a window holds the step)"
        ),
    )
    members: list[MemberScale] = Field(
        default_factory=list,
        description="empty: one fit; otherwise every fit whose scores the graph averages, first one first",
    )
    level_left_out: list[str] = Field(
        default_factory=list,
        description="channels the level term leaves out (any member): their level moved one way through the "
        "training rows and beyond them in the holdout, so the other terms judge them",
    )


ALERT_LEVEL = "alert"  # the severity of a score above the threshold but below every stricter level


class SeverityLevel(_Strict):
    """One named operating point of the score: a stricter budget means fewer, surer alerts."""

    value: float = Field(description="score above which a window reaches this level")
    false_alarm_budget: float = Field(gt=0, lt=1, description="target fraction of normal windows above")


class Threshold(_Strict):
    """An alert threshold on the score of one scorer graph, with how it was obtained."""

    value: float = Field(description="score above which a window is anomalous")
    method: str = Field(description="calibration method, e.g. 'pot' or 'quantile'")
    false_alarm_budget: float = Field(gt=0, lt=1, description="target fraction of normal windows above")
    calibration_windows: int = Field(
        ge=1,
        description="normal windows behind the threshold (the holdout's, plus the training windows "
        "when both calibrate)",
    )
    details: dict[str, float] = Field(default_factory=dict, description="fit parameters of the method")
    levels: dict[str, SeverityLevel] = Field(
        default_factory=dict,
        description="further operating points of the same score, by name (e.g. critical): each calibrated "
        "by the same rule at its own false-alarm budget",
    )

    def at_level(self, level: str | None) -> float:
        """The score above which a window reaches `level`; None is the alert threshold itself."""
        if level is None:
            return self.value
        try:
            return self.levels[level].value
        except KeyError:
            known = ", ".join(sorted(self.levels)) or "none"
            raise BundleError(f"the bundle has no severity level {level!r} (it has: {known})") from None

    def ladder(self) -> SeverityLadder:
        """Every level with the threshold itself as `alert`, ordered once for scoring many windows."""
        points = [(self.value, ALERT_LEVEL), *((lv.value, name) for name, lv in self.levels.items())]
        return SeverityLadder(tuple(sorted(points, reverse=True)))

    def severity_of(self, score: float) -> str | None:
        """The strictest level `score` exceeds, the threshold itself counting as level `alert`; None when
        it exceeds none (an agent whose threshold was overridden below all of them)."""
        return self.ladder().of(score)


@dataclass(frozen=True, slots=True)
class SeverityLadder:
    """A threshold's levels as (score, name) from the strictest down. Why a separate object: the agent asks
    for every scored window's level, and ordering the levels once per bundle keeps that to one short scan."""

    points: tuple[tuple[float, str], ...]

    def of(self, score: float) -> str | None:
        """The strictest level `score` exceeds; None when it exceeds none."""
        return next((name for value, name in self.points if score > value), None)


class FileEntry(_Strict):
    """One file of the bundle, pinned by its hash."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    role: str = Field(description="scorer-fp32, scorer-int8, generator, plot, ...")


class Provenance(_Strict):
    """Where the bundle came from, enough to reproduce it."""

    data_fingerprint: str = Field(description="sha256 over the training data as parsed")
    data_files: list[str]
    rows_train: int
    rows_holdout: int
    seed: int
    epochs: int
    package_version: str
    torch_version: str
    onnxruntime_version: str
    created_at: str
    fit_seconds: float
    data_cleaning: dict[str, int] = Field(
        default_factory=dict,
        description="rows, interpolated cells, inserted rows, dropped duplicates, segments",
    )


class BundleManifest(_Strict):
    """Content of bundle.json."""

    schema_version: int
    bundle_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    channels: list[str] = Field(min_length=1)
    window_len: int = Field(ge=2)
    hop_len: int = Field(ge=1)
    latent_dim: int = Field(ge=1)
    sample_period_s: float | None = Field(description="median sampling interval of the training data")
    normalisation: Normalisation
    score: ScoreDefinition
    thresholds: dict[str, Threshold] = Field(description="keyed by scorer file name")
    files: dict[str, FileEntry]
    provenance: Provenance
    validation: dict[str, JsonValue] = Field(description="parity checks and quality metrics at fit time")
    level_process: LevelProcess | None = Field(
        None, description="window levels for the simulator, when the generator draws shapes only"
    )
    refused: dict[str, str] = Field(
        default_factory=dict,
        description="scorer graphs that failed a quality gate at fit time, with the figures: shipped for "
        "inspection, never served (the agent serves the FP32 graph instead and says why)",
    )


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: BundleManifest

    def model_path(self, name: str) -> Path:
        """Path of a model file listed in the manifest."""
        if name not in self.manifest.files:
            raise BundleError(f"{self.path}: bundle has no file {name!r}")
        return self.path / name

    def served_precision(self, requested: str) -> Precision:
        """`requested` unless its graph was refused at fit time; then fp32, logged with the reason."""
        wanted = Precision(requested)
        model = SCORER_INT8 if wanted is Precision.INT8 else SCORER_FP32
        reason = self.manifest.refused.get(model)
        if reason is None or wanted is Precision.FP32:
            return wanted
        log.warning("%s: the %s graph was refused at fit time (%s); serving fp32", self.path, wanted, reason)
        return Precision.FP32

    def threshold_for(self, model_name: str) -> Threshold:
        """The calibrated threshold that belongs to one scorer graph."""
        try:
            return self.manifest.thresholds[model_name]
        except KeyError:
            raise BundleError(f"{self.path}: no calibrated threshold for {model_name!r}") from None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large engines do not load whole into memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: Path, role: str) -> FileEntry:
    """Describe one file for the manifest."""
    return FileEntry(sha256=sha256_file(path), size_bytes=path.stat().st_size, role=role)


def write_manifest(folder: Path, manifest: BundleManifest) -> Path:
    """Write bundle.json; the manifest must already list every file with its hash."""
    target = folder / MANIFEST_NAME
    target.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    return target


def load_bundle(folder: Path | str, check_shapes: bool = True, trusted_keys: Sequence[Path] = ()) -> Bundle:
    """Open a bundle folder and verify schema, hashes and (optionally) the graphs' tensor shapes; with
    `trusted_keys`, also its signature (edge_agent.signing), before anything else is read."""
    path = Path(folder)
    if trusted_keys:
        from edge_agent.signing import check_signature

        if not (path / MANIFEST_NAME).is_file():
            raise BundleError(f"{path}: not a bundle folder")
        check_signature(path, trusted_keys)
    from edge_agent.bundle_checks import check_consistency, check_graph_shapes, check_hashes, read_manifest

    manifest = read_manifest(path)
    check_consistency(path, manifest)
    check_hashes(path, manifest)
    if check_shapes:
        check_graph_shapes(path, manifest)
    log.debug("bundle %s verified at %s", manifest.bundle_id, path)
    return Bundle(path=path, manifest=manifest)
