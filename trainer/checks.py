"""The check stage: every exported graph scored by ONNX Runtime on held-out windows and injected anomalies,
calibrated by the bundle's rule, compared with torch and with each other (the INT8 gate), and plotted."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from torch import nn

from edge_agent.backends.onnx_runtime import OnnxRuntimeScorer
from edge_agent.bundle import SCORER_FP32, SCORER_INT8, Threshold
from trainer.auto_score import check_windows
from trainer.calibrate import calibrate, evenly_spaced, quietly
from trainer.config import TrainConfig
from trainer.errors import QualityGateError
from trainer.export import torch_scores
from trainer.fit import TrainedNets
from trainer.int8_choice import INT8_WITH_GENERATOR, Int8LayerChoice, generator_layers_win
from trainer.members import gan_summary
from trainer.parity import Int8Parity, check_fp32_parity, check_int8_parity, int8_parity
from trainer.plots import plot_score_histograms, plot_training_curves
from trainer.release_gate import is_gated, ungated_scores
from trainer.synthetic_anomalies import auroc
from trainer.windows import WindowSets

log = logging.getLogger(__name__)


def calibrate_and_check(
    scorer: nn.Module,
    members: list[TrainedNets],
    windows: WindowSets,
    config: TrainConfig,
    stage: Path,
    cross_fit: npt.NDArray[np.float32] | None = None,
) -> tuple[dict[str, object], dict[str, Threshold], dict[str, str]]:
    """Thresholds per graph, the validation record for bundle.json, and the graphs refused (INT8 gate).

    `cross_fit`: the training windows' out-of-sample scores (`trainer.cross_fit`, torch FP32, without the
    release gate), a further calibration for every graph. A gated scorer's graphs all take the ungated
    score's threshold (`trainer.release_gate`), calibrated once by the same rule."""
    window_len, n_channels = config.model.window_len, windows.train.shape[2]
    nets = members[0]  # the training curves are the first member's
    normal, anomalous = check_windows(windows, config.fit.seed)
    train_sample = evenly_spaced(windows.train) if config.score.uses_training_windows else None
    ungated = ungated_threshold(scorer, windows, config, train_sample, cross_fit)

    def check(model: str) -> _GraphCheck:
        ort_scorer = OnnxRuntimeScorer(stage / model, window_len, n_channels, threads=config.fit.threads)
        holdout_scores = score_all(ort_scorer, windows.holdout)
        # the candidate INT8 graph's calibration would log what the other INT8 graph's already did
        with quietly() if model == INT8_WITH_GENERATOR else contextlib.nullcontext():
            threshold = ungated or calibrate(
                holdout_scores,
                config.score.false_alarm_budget,
                config.score.calibration,
                config.score.pot_initial_quantile,
                None if train_sample is None else score_all(ort_scorer, train_sample),
                config.score.severity_levels,
                block=window_len,
                cross_fit_scores=cross_fit,
            )
        normal_scores = score_all(ort_scorer, normal)
        kind_scores = {kind: score_all(ort_scorer, w) for kind, w in anomalous.items()}
        area = auroc(normal_scores, np.concatenate(list(kind_scores.values())))
        metrics = detection_metrics(normal_scores, kind_scores, area, threshold.value, holdout_scores)
        return _GraphCheck(threshold, normal_scores, kind_scores, area, metrics)

    checks = {model: check(model) for model in (SCORER_FP32, SCORER_INT8)}
    layer_choice = None
    if (stage / INT8_WITH_GENERATOR).exists():
        candidate = check(INT8_WITH_GENERATOR)
        candidate_parity = joined_int8_parity(
            {SCORER_FP32: checks[SCORER_FP32].scores, SCORER_INT8: candidate.scores},
            {SCORER_FP32: checks[SCORER_FP32].threshold, SCORER_INT8: candidate.threshold},
            {SCORER_FP32: checks[SCORER_FP32].auroc, SCORER_INT8: candidate.auroc},
        )
        wins = generator_layers_win(checks[SCORER_INT8].metrics, candidate.metrics)
        layer_choice = Int8LayerChoice(
            wins and passes_int8_gate(candidate_parity, config),
            checks[SCORER_INT8].metrics,
            candidate.metrics,
        )
        if layer_choice.with_generator:
            (stage / INT8_WITH_GENERATOR).replace(stage / SCORER_INT8)
            checks[SCORER_INT8] = candidate
        else:
            (stage / INT8_WITH_GENERATOR).unlink()
        log.info("INT8: the generator's hidden layers %s", layer_choice.as_dict()["generator_hidden_layers"])
    for model, result in checks.items():
        plot_score_histograms(
            result.normal_scores,
            result.kind_scores,
            result.threshold.value,
            f"{model}: held-out normal vs injected anomalies",
            stage / f"scores_{model}.png",
        )
    check_scores = {model: r.scores for model, r in checks.items()}
    thresholds = {model: r.threshold for model, r in checks.items()}
    aurocs = {model: r.auroc for model, r in checks.items()}
    per_model: dict[str, dict[str, object]] = {model: r.metrics for model, r in checks.items()}
    fp32_error = check_fp32_parity(
        torch_scores(scorer, normal), check_scores[SCORER_FP32][0], config.quantize.max_fp32_torch_error
    )
    parity = joined_int8_parity(check_scores, thresholds, aurocs)
    refused = int8_gate(parity, config)
    plot_training_curves(nets.history, nets.best_epoch, stage / "training_curves.png")
    validation: dict[str, object] = {
        "fp32_vs_torch_relative_error": fp32_error,
        "int8_vs_fp32": parity.as_dict(),
        "detection": per_model,
        "gan": gan_summary(nets),
    }
    if layer_choice is not None:
        validation["int8_layers"] = layer_choice.as_dict()
    if len(members) > 1:
        validation["gan_members"] = [gan_summary(member) for member in members]
    return validation, thresholds, refused


def ungated_threshold(
    scorer: nn.Module,
    windows: WindowSets,
    config: TrainConfig,
    train_sample: npt.NDArray[np.float32] | None,
    cross_fit: npt.NDArray[np.float32] | None,
) -> Threshold | None:
    """The ungated score's threshold by the bundle's rule (torch FP32), which every graph of a gated scorer
    takes (`trainer.release_gate`); None for an ungated scorer, whose graphs calibrate their own."""
    if not is_gated(scorer):
        return None
    score = config.score
    return calibrate(
        ungated_scores(scorer, windows.holdout),
        score.false_alarm_budget,
        score.calibration,
        score.pot_initial_quantile,
        None if train_sample is None else ungated_scores(scorer, train_sample),
        score.severity_levels,
        block=config.model.window_len,
        cross_fit_scores=cross_fit,
    )


@dataclass(frozen=True, slots=True)
class _GraphCheck:
    """One graph's threshold, its scores on the check windows and the detection figures from them."""

    threshold: Threshold
    normal_scores: npt.NDArray[np.float32]
    kind_scores: dict[str, npt.NDArray[np.float32]]
    auroc: float
    metrics: dict[str, object]

    @property
    def scores(self) -> tuple[npt.NDArray[np.float32], dict[str, npt.NDArray[np.float32]]]:
        """Normal and per-kind scores, as joined_int8_parity takes them."""
        return self.normal_scores, self.kind_scores


def int8_gate(parity: Int8Parity, config: TrainConfig) -> dict[str, str]:
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


def passes_int8_gate(parity: Int8Parity, config: TrainConfig) -> bool:
    """Whether an INT8 graph with these figures would be served (the gate, without logging a refusal)."""
    try:
        check_int8_parity(parity, config.quantize)
    except QualityGateError:
        return False
    return True


def score_all(
    scorer: OnnxRuntimeScorer, windows: npt.NDArray[np.float32], batch: int = 512
) -> npt.NDArray[np.float32]:
    return np.concatenate(
        [scorer.score(windows[i : i + batch]).scores for i in range(0, len(windows), batch)]
    )


def detection_metrics(
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


def joined_int8_parity(
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
