"""The release gate: a window whose fault sits in its oldest steps scores low once the newest read normal."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from trainer.calibrate import calibrate
from trainer.checks import ungated_threshold
from trainer.config import TrainConfig
from trainer.export import export_scorer
from trainer.networks import Critic, Encoder, Generator
from trainer.release_gate import full_and_recent, gated, release_ratio
from trainer.score_scales import measure_scales
from trainer.scorer_graph import ScorerModule, ScoreTerms, ScoreWeights
from trainer.windows import Normaliser, WindowSets

LATENT, CHANNELS, WINDOW = 4, 3, 32


def _normal_windows(n: int, seed: int) -> np.ndarray:
    """Raw windows [n, W, C]: a slow sine per channel at a random phase, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, CHANNELS))
    values = np.sin(2 * np.pi * t / 24 + phase) + rng.normal(0, 0.2, size=(n, WINDOW, CHANNELS))
    return values.astype(np.float32)


def _scorer_and_windows() -> tuple[ScorerModule, WindowSets]:
    torch.manual_seed(0)
    terms = ScoreTerms(
        Encoder(LATENT, CHANNELS, WINDOW, 8),
        Generator(LATENT, CHANNELS, WINDOW, 8),
        Critic(CHANNELS, WINDOW, 8),
    ).eval()
    train, holdout = _normal_windows(512, 0), _normal_windows(256, 1)
    flat = train.reshape(-1, CHANNELS)
    normaliser = Normaliser(flat.mean(axis=0), flat.std(axis=0), [])
    module = measure_scales(terms, train, normaliser, ScoreWeights(), residual_floor=0.05)
    return module, WindowSets(train, holdout, normaliser, len(flat), len(holdout) * WINDOW)


def test_gate_is_the_smaller_of_full_and_scaled_recent_and_contributions_sum_to_it() -> None:
    scorer, windows = _scorer_and_windows()
    ratio = 1.7
    gate = scorer.with_release_ratio(ratio)
    batch = torch.from_numpy(windows.holdout[:64])
    with torch.no_grad():
        score, contributions = gate(batch)
        full_score, _ = scorer(batch)
    full, recent = full_and_recent(scorer, windows.holdout[:64])
    np.testing.assert_allclose(full_score.numpy(), full, rtol=1e-5)
    np.testing.assert_allclose(score.numpy(), np.minimum(full, ratio * recent), rtol=1e-4)
    np.testing.assert_allclose(contributions.sum(dim=1).numpy(), score.numpy(), rtol=1e-5)
    assert (recent * ratio < full).any() and (recent * ratio > full).any()  # both sides of the min are used


def test_a_fault_in_the_oldest_steps_is_let_go_and_one_in_the_newest_is_not() -> None:
    scorer, windows = _scorer_and_windows()
    config = TrainConfig()
    gate = gated(scorer, windows, config)
    assert gate.release_ratio is not None and gate.release_ratio > 0
    oldest, newest = windows.holdout[:64].copy(), windows.holdout[:64].copy()
    oldest[:, :4, 0] += 8.0  # a burst that ended 28 steps ago
    newest[:, -4:, 0] += 8.0  # the same burst, still going on
    with torch.no_grad():
        old_full, _ = scorer(torch.from_numpy(oldest))
        old_gated, _ = gate(torch.from_numpy(oldest))
        new_full, _ = scorer(torch.from_numpy(newest))
        new_gated, _ = gate(torch.from_numpy(newest))
    assert float((old_gated / old_full).median()) < 0.5  # let go
    np.testing.assert_allclose(new_gated.numpy(), new_full.numpy(), rtol=1e-4)  # kept whole


def test_no_gate_when_switched_off_or_when_the_recent_terms_carry_no_weight() -> None:
    scorer, windows = _scorer_and_windows()
    off = TrainConfig.model_validate({"score": {"release_gate": False}})
    assert release_ratio(scorer, windows, off) is None
    assert gated(scorer, windows, off) is scorer
    window_terms = scorer.reweighted(
        dataclasses.replace(scorer.weights, local=0.0, level=0.0, variability=0.0)
    )
    assert release_ratio(window_terms, windows, TrainConfig()) is None


def test_the_exported_graph_gates_as_the_torch_module_does(tmp_path: Path) -> None:
    scorer, windows = _scorer_and_windows()
    gate = gated(scorer, windows, TrainConfig())
    path = tmp_path / "scorer.onnx"
    export_scorer(gate, WINDOW, CHANNELS, path)
    sample = windows.holdout[:32].copy()
    sample[:16, :4, 1] += 8.0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_score, onnx_contributions = session.run(None, {session.get_inputs()[0].name: sample})
    with torch.no_grad():
        torch_score, _ = gate(torch.from_numpy(sample))
    np.testing.assert_allclose(onnx_score, torch_score.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(onnx_contributions.sum(axis=1), onnx_score, rtol=1e-4, atol=1e-5)


def test_a_gated_scorer_is_calibrated_on_its_ungated_score_and_an_ungated_one_on_its_graphs() -> None:
    scorer, windows = _scorer_and_windows()
    config = TrainConfig()
    gate = gated(scorer, windows, config)
    threshold = ungated_threshold(gate, windows, config, None, None)
    assert threshold is not None
    full, _ = full_and_recent(scorer, windows.holdout)
    score = config.score
    expected = calibrate(full, score.false_alarm_budget, score.calibration, score.pot_initial_quantile)
    assert threshold.value == expected.value
    with torch.no_grad():
        gated_holdout, _ = gate(torch.from_numpy(windows.holdout))
    assert (gated_holdout.numpy() <= full + 1e-5).all()  # the gate only lowers a score
    # ... and here it lowers the holdout's tail, so calibrating the gated score would give another threshold
    on_gated = calibrate(
        gated_holdout.numpy().astype(np.float64),
        score.false_alarm_budget,
        score.calibration,
        score.pot_initial_quantile,
    )
    assert on_gated.value < threshold.value
    assert ungated_threshold(scorer, windows, config, None, None) is None
