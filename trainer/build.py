"""build_bundle(): CSV -> windows -> GAN + encoder -> ONNX FP32/INT8 -> thresholds -> verified bundle."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from edge_agent.backends.onnx_runtime import OnnxRuntimeScorer
from edge_agent.bundle import (
    GENERATOR,
    SCHEMA_VERSION,
    SCORER_FP32,
    SCORER_INT8,
    Bundle,
    BundleManifest,
    MemberScale,
    Normalisation,
    Provenance,
    ScoreDefinition,
    Threshold,
    file_entry,
)
from edge_agent.errors import DataError
from edge_agent.simulator.stream import TRUNCATION
from trainer import scorer_graph
from trainer.auto_score import check_windows, choose_for_fit, scorer_for
from trainer.bundle_writer import check_output_folder, publish, staging_folder
from trainer.calibrate import calibrate, evenly_spaced
from trainer.config import TrainConfig
from trainer.csv_data import TrainingData, load_training_data
from trainer.distributed import SINGLE, World, leave
from trainer.errors import QualityGateError
from trainer.export import export_generator, export_scorer, torch_scores
from trainer.fit import TrainedNets, fit_networks
from trainer.level_process import measure_level_process
from trainer.networks import count_parameters
from trainer.parity import Int8Parity, check_fp32_parity, check_int8_parity, int8_parity
from trainer.plots import plot_score_histograms, plot_training_curves
from trainer.provenance import seed_everything, utc_now, versions
from trainer.quantize import quantize_scorer
from trainer.synthetic_anomalies import auroc
from trainer.windows import (
    MIN_WINDOW_LEN,
    Normaliser,
    WindowSets,
    build_windows,
    largest_fitting_window,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BuildResult:
    """The published bundle and the headline numbers for the command line."""

    bundle: Bundle
    fit_seconds: float


def build_bundle(data_path: Path, out: Path, config: TrainConfig) -> BuildResult:
    """The whole fit in this process; nothing is written to `out` unless every check passes."""
    result = build_bundle_in(SINGLE, data_path, out, config)
    assert result is not None  # a single process is rank 0
    return result


def build_bundle_in(world: World, data_path: Path, out: Path, config: TrainConfig) -> BuildResult | None:
    """The fit as one rank of a torchrun job (or alone): every rank trains, rank 0 exports and writes.

    Returns None on the other ranks, which stop once the networks are trained.
    """
    started = time.perf_counter()
    check_output_folder(out)
    seed_everything(config.fit.seed, max(1, config.fit.threads // world.local_size))
    data = load_training_data(data_path, config.data)
    log.info(
        "data: %d rows, %d channels, %d segments from %d file(s); %d cells interpolated, %d rows inserted",
        data.report.rows,
        len(data.channels),
        data.report.segments,
        len(data.report.files),
        data.report.interpolated_cells,
        data.report.inserted_rows,
    )
    config = _window_that_fits(data, config)
    windows = build_windows(
        data.segments,
        config.model.window_len,
        config.fit.train_stride,
        config.data.holdout_fraction,
        config.data.spread_floor,
    )
    _log_constant_channels(data, windows.normaliser)
    members = _fit_members(windows, config, world)
    leave(world)
    if not world.is_main:
        return None
    member_scorers = [scorer_for(nets, windows, config) for nets in members]
    choice = choose_for_fit(member_scorers, windows, config) if config.fit.auto else None
    if choice is not None:
        member_scorers = [member.reweighted(choice.weights) for member in member_scorers]
    scorer: nn.Module = (
        member_scorers[0] if len(member_scorers) == 1 else scorer_graph.MeanScorer(member_scorers)
    )
    with staging_folder(out) as stage:
        validation, thresholds, refused = _export_and_check(scorer, members, windows, config, stage)
        validation["training"] = {"world_size": world.size, "backend": world.backend or "none"}
        if choice is not None:
            validation["auto"] = choice.as_dict()  # type: ignore[assignment]
        fit_seconds = time.perf_counter() - started
        definition = _score_definition(member_scorers, _member_seeds(config))
        manifest = _manifest(stage, data, windows, config, definition, thresholds, validation, fit_seconds)
        level_process = (
            measure_level_process(
                windows.train,
                windows.normaliser,
                config.model.window_len,
                _generated_windows(members[0], config),
            )
            if config.model.removes_window_level and config.fit.train_stride == 1
            else None
        )
        manifest = manifest.model_copy(update={"refused": refused, "level_process": level_process})
        bundle = publish(stage, manifest, out, config.bundle.sign_key)
    return BuildResult(bundle=bundle, fit_seconds=fit_seconds)


def _generated_windows(nets: TrainedNets, config: TrainConfig, count: int = 512) -> npt.NDArray[np.float32]:
    """Normalised generator windows [count, W, C], latents drawn as the simulator draws them."""
    generator = torch.Generator().manual_seed(config.fit.seed)
    latent = TRUNCATION * torch.randn(count, config.model.latent_dim, generator=generator)
    device = next(nets.generator.parameters()).device
    nets.generator.eval()
    with torch.no_grad():
        drawn_windows = nets.generator(latent.to(device)).transpose(1, 2).cpu()
    drawn: npt.NDArray[np.float32] = drawn_windows.numpy().astype(np.float32)
    return drawn


def _window_that_fits(data: TrainingData, config: TrainConfig) -> TrainConfig:
    """The config, with a shorter default window where gaps leave too little data for the default one.

    A window length the user set is kept as given: then the error names the setting that would work.
    """
    configured = config.model.window_len
    fitting = largest_fitting_window(data.segments, configured, config.data.holdout_fraction)
    if fitting == configured:
        return config
    longest = max(len(segment.values) for segment in data.segments)
    explicit = "window_len" in config.model.model_fields_set
    if fitting is None:
        needed = int(np.ceil(MIN_WINDOW_LEN / config.data.holdout_fraction))
        raise DataError(
            f"too few rows for {f'window_len={configured}' if explicit else 'any window'}: the longest "
            f"gap-free stretch has {longest} rows, and even {MIN_WINDOW_LEN}-row windows need {needed} "
            "(more data, fewer gaps, or data.max_gap_rows to interpolate longer ones)"
        )
    if explicit:
        raise DataError(
            f"too few rows for window_len={configured}: stretches of at most {longest} rows leave no "
            f"training or holdout window; set model.window_len to {fitting} (the largest that fits) or less"
        )
    log.warning(
        "the longest gap-free stretch has %d rows: too few for %d-row windows with a %.0f%% holdout; "
        "fitting %d-row windows instead (set model.window_len to choose)",
        longest,
        configured,
        config.data.holdout_fraction * 100,
        fitting,
    )
    model = config.model.model_copy(update={"window_len": fitting})
    return config.model_copy(update={"model": model})


def _member_seeds(config: TrainConfig) -> list[int]:
    """fit.seed, fit.seed + 1, ...: one per member, in the order the graph holds them."""
    return [config.fit.seed + index for index in range(config.model.members)]


def _fit_members(windows: WindowSets, config: TrainConfig, world: World) -> list[TrainedNets]:
    """The networks of every member, fitted on the same windows.

    A member with seed s is the very fit a one-member bundle with fit.seed s would get.
    """
    train = _to_network_layout(windows.train, windows.normaliser)
    holdout = _to_network_layout(windows.holdout, windows.normaliser)
    seeds = _member_seeds(config)
    members = []
    for index, seed in enumerate(seeds):
        if len(seeds) > 1:
            log.info("member %d of %d: seed %d", index + 1, len(seeds), seed)
        fit = config.fit.model_copy(update={"seed": seed})
        members.append(fit_networks(train, holdout, config.model, fit, world))
    return members


def _to_network_layout(windows: npt.NDArray[np.float32], normaliser: Normaliser) -> npt.NDArray[np.float32]:
    """Raw [n, W, C] -> normalised [n, C, W]."""
    return np.ascontiguousarray(normaliser.apply(windows).transpose(0, 2, 1))


def _log_constant_channels(data: TrainingData, normaliser: Normaliser) -> None:
    if normaliser.constant_channels:
        names = [data.channels[i] for i in normaliser.constant_channels]
        log.warning("constant in the training rows (kept, scale 1): %s", ", ".join(names))


def _export_and_check(
    scorer: nn.Module,
    members: list[TrainedNets],
    windows: WindowSets,
    config: TrainConfig,
    stage: Path,
) -> tuple[dict[str, object], dict[str, Threshold], dict[str, str]]:
    window_len, n_channels = config.model.window_len, windows.train.shape[2]
    export_scorer(scorer, window_len, n_channels, stage / SCORER_FP32)
    nets = members[0]  # the generator graph and the training curves are the first member's
    normaliser = windows.normaliser
    raw_generator = scorer_graph.RawGenerator(
        nets.generator, torch.from_numpy(normaliser.mean), torch.from_numpy(normaliser.scale)
    )
    export_generator(raw_generator, config.model.latent_dim, stage / GENERATOR)
    calibration = windows.train[
        np.random.default_rng(config.fit.seed).permutation(len(windows.train))[
            : config.quantize.calibration_windows
        ]
    ]
    quantize_scorer(stage / SCORER_FP32, stage / SCORER_INT8, calibration)

    normal, anomalous = check_windows(windows, config.fit.seed)
    check_scores = {}
    aurocs: dict[str, float] = {}
    per_model: dict[str, dict[str, object]] = {}
    thresholds: dict[str, Threshold] = {}
    train_sample = evenly_spaced(windows.train) if config.score.uses_training_windows else None
    for model in (SCORER_FP32, SCORER_INT8):
        ort_scorer = OnnxRuntimeScorer(stage / model, window_len, n_channels, threads=config.fit.threads)
        holdout_scores = _score(ort_scorer, windows.holdout)
        thresholds[model] = calibrate(
            holdout_scores,
            config.score.false_alarm_budget,
            config.score.calibration,
            config.score.pot_initial_quantile,
            None if train_sample is None else _score(ort_scorer, train_sample),
            config.score.severity_levels,
            block=window_len,
        )
        normal_scores = _score(ort_scorer, normal)
        kind_scores = {kind: _score(ort_scorer, w) for kind, w in anomalous.items()}
        check_scores[model] = (normal_scores, kind_scores)
        aurocs[model] = auroc(normal_scores, np.concatenate(list(kind_scores.values())))
        per_model[model] = _detection_metrics(
            normal_scores, kind_scores, aurocs[model], thresholds[model].value, holdout_scores
        )
        plot_score_histograms(
            normal_scores,
            kind_scores,
            thresholds[model].value,
            f"{model}: held-out normal vs injected anomalies",
            stage / f"scores_{model}.png",
        )
    fp32_error = check_fp32_parity(
        torch_scores(scorer, normal), check_scores[SCORER_FP32][0], config.quantize.max_fp32_torch_error
    )
    parity = _int8_parity(check_scores, thresholds, aurocs)
    refused = _int8_gate(parity, config)
    plot_training_curves(nets.history, nets.best_epoch, stage / "training_curves.png")
    validation: dict[str, object] = {
        "fp32_vs_torch_relative_error": fp32_error,
        "int8_vs_fp32": parity.as_dict(),
        "detection": per_model,
        "gan": _gan_summary(nets),
    }
    if len(members) > 1:
        validation["gan_members"] = [_gan_summary(member) for member in members]
    return validation, thresholds, refused


def _int8_gate(parity: Int8Parity, config: TrainConfig) -> dict[str, str]:
    """{} when INT8 matches FP32; else the refusal to record (or the error, with on_int8_failure: fail).

    Why not fail: a fit whose INT8 graph drifts from FP32 still has a good FP32 scorer, and a user with a
    few hundred rows should get it, with the INT8 figures that say why it is not served.
    """
    try:
        check_int8_parity(parity, config.quantize)
    except QualityGateError as err:
        if config.quantize.on_int8_failure == "fail":
            raise
        log.warning("%s: the bundle ships with the INT8 graph refused; agents serve FP32", err)
        return {SCORER_INT8: str(err)}
    return {}


def _gan_summary(nets: TrainedNets) -> dict[str, object]:
    """How one fit went: the checkpoint the validation signal chose and what it read there."""
    return {
        "best_epoch": nets.best_epoch,
        "collapsed_epochs": nets.collapsed_epochs,
        "val_mmd": nets.history["val_mmd"][nets.best_epoch - 1],
        "val_diversity_ratio": nets.history["val_diversity_ratio"][nets.best_epoch - 1],
        "encoder_val_loss": min(nets.history["encoder_val_loss"]),
        "parameters": count_parameters(nets.generator, nets.critic, nets.encoder),
    }


def _score(
    scorer: OnnxRuntimeScorer, windows: npt.NDArray[np.float32], batch: int = 512
) -> npt.NDArray[np.float32]:
    return np.concatenate(
        [scorer.score(windows[i : i + batch]).scores for i in range(0, len(windows), batch)]
    )


def _detection_metrics(
    normal: npt.NDArray[np.float32],
    kinds: dict[str, npt.NDArray[np.float32]],
    auroc_synthetic: float,
    threshold: float,
    holdout: npt.NDArray[np.float32],
) -> dict[str, object]:
    return {
        "auroc_synthetic": auroc_synthetic,
        "auroc_by_kind": {kind: auroc(normal, scores) for kind, scores in kinds.items()},
        "recall_by_kind": {kind: float(np.mean(scores > threshold)) for kind, scores in kinds.items()},
        "holdout_false_alarm_rate": float(np.mean(holdout > threshold)),
        "threshold": threshold,
    }


def _int8_parity(
    scores: dict[str, tuple[npt.NDArray[np.float32], dict[str, npt.NDArray[np.float32]]]],
    thresholds: dict[str, Threshold],
    aurocs: dict[str, float],
) -> Int8Parity:
    def joined(model: str) -> npt.NDArray[np.float32]:
        normal, kinds = scores[model]
        return np.concatenate([normal, *kinds.values()])

    return int8_parity(
        joined(SCORER_FP32),
        joined(SCORER_INT8),
        n_normal=len(scores[SCORER_FP32][0]),
        thresholds=(thresholds[SCORER_FP32].value, thresholds[SCORER_INT8].value),
        aurocs=(aurocs[SCORER_FP32], aurocs[SCORER_INT8]),
    )


def _score_definition(members: list[scorer_graph.ScorerModule], seeds: list[int]) -> ScoreDefinition:
    """The first member's scales at the top level (as a one-fit bundle has them), every member's below."""
    scales = [
        MemberScale(
            seed=seed,
            channel_residual_scale=member.channel_residual_scale.flatten().tolist(),
            feature_residual_scale=member.feature_residual_scale,
            latent_distance_scale=member.tails["latent"] if member.latent_distance is not None else None,
            term_tails=dict(member.tails),
        )
        for member, seed in zip(members, seeds, strict=True)
    ]
    first = members[0]
    weights = first.weights
    return ScoreDefinition(
        window_level="remove" if first.terms.remove_level else "keep",
        formula=(scorer_graph.__doc__ or "").split("\n\n", 1)[1].strip(),
        feature_weight=weights.feature,
        channel_residual_scale=scales[0].channel_residual_scale,
        feature_residual_scale=scales[0].feature_residual_scale,
        latent_weight=weights.latent,
        latent_distance_scale=scales[0].latent_distance_scale,
        term_weights={
            "reconstruction": weights.reconstruction,
            "local": weights.local,
            "level": weights.level,
            "variability": weights.variability,
            "feature": weights.feature,
            "latent": weights.latent,
        },
        term_tails=dict(first.tails),
        local_half_life_steps=weights.local_half_life_steps,
        variability_steps=first.change_steps,
        members=scales if len(scales) > 1 else [],
    )


def _manifest(
    stage: Path,
    data: TrainingData,
    windows: WindowSets,
    config: TrainConfig,
    score: ScoreDefinition,
    thresholds: dict[str, Threshold],
    validation: dict[str, object],
    fit_seconds: float,
) -> BundleManifest:
    roles = {SCORER_FP32: "scorer-fp32", SCORER_INT8: "scorer-int8", GENERATOR: "generator"}
    files = {p.name: file_entry(p, roles.get(p.name, "plot")) for p in sorted(stage.iterdir()) if p.is_file()}
    created = utc_now()
    version = versions()
    scorer_hash = files[SCORER_FP32].sha256[:10]
    return BundleManifest(
        schema_version=SCHEMA_VERSION,
        bundle_id=f"edgegan-{created[:10]}-{scorer_hash}",
        channels=data.channels,
        window_len=config.model.window_len,
        hop_len=config.model.hop_len,
        latent_dim=config.model.latent_dim,
        sample_period_s=data.sample_period_s,
        normalisation=Normalisation(
            method="standard",
            mean=windows.normaliser.mean.tolist(),
            scale=windows.normaliser.scale.tolist(),
            low=windows.train.min(axis=(0, 1)).astype(float).tolist(),
            high=windows.train.max(axis=(0, 1)).astype(float).tolist(),
        ),
        score=score,
        thresholds=thresholds,
        files=files,
        provenance=Provenance(
            data_fingerprint=data.fingerprint,
            data_files=data.report.files,
            rows_train=windows.rows_train,
            rows_holdout=windows.rows_holdout,
            seed=config.fit.seed,
            epochs=config.fit.epochs,
            package_version=version["package"],
            torch_version=version["torch"],
            onnxruntime_version=version["onnxruntime"],
            created_at=created,
            fit_seconds=round(fit_seconds, 2),
            data_cleaning=data.report.counts(),
        ),
        validation=validation,  # type: ignore[arg-type]
    )
