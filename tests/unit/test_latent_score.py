"""The encoder-latent distance term of the score: a Mahalanobis distance, mixed in by score.latent_weight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edge_agent.bundle import ScoreDefinition
from trainer.export import export_scorer
from trainer.networks import Critic, Encoder, Generator
from trainer.quantize import layers_to_quantise
from trainer.scorer_graph import LatentDistance, ScorerModule, ScoreTerms, floored_residual_scale

LATENT, CHANNELS, WINDOW = 4, 3, 32


def _correlated_latents(n: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Latents with one wide and one very narrow direction, and the mixing matrix."""
    rng = np.random.default_rng(seed)
    spread = np.diag([5.0, 1.0, 1.0, 0.1])
    rotation, _ = np.linalg.qr(rng.normal(size=(LATENT, LATENT)))
    mixing = rotation @ spread
    data = rng.normal(size=(n, LATENT)) @ mixing.T + np.array([1.0, -2.0, 0.5, 3.0])
    return torch.from_numpy(data).float(), mixing


def test_distance_reads_like_chi_square_on_its_training_latents() -> None:
    latents, _ = _correlated_latents(20_000)
    distance = LatentDistance.fit(latents)
    values = distance(latents).numpy()
    assert abs(values.mean() - LATENT) < 0.1 * LATENT  # squared Mahalanobis of a Gaussian: mean = dimension


def test_distance_weighs_a_move_by_the_spread_in_its_direction() -> None:
    """The same Euclidean step is far along the narrow direction and near along the wide one."""
    latents, mixing = _correlated_latents(20_000)
    distance = LatentDistance.fit(latents)
    centre = latents.mean(dim=0, keepdim=True)
    wide = torch.from_numpy(mixing[:, 0] / np.linalg.norm(mixing[:, 0])).float()
    narrow = torch.from_numpy(mixing[:, 3] / np.linalg.norm(mixing[:, 3])).float()
    step = 1.0
    far = float(distance(centre + step * narrow)[0])
    near = float(distance(centre + step * wide)[0])
    assert far > 50.0  # one unit is ten standard deviations of the narrow direction: 100 in squared units
    assert near < 0.1  # and a fifth of one along the wide direction
    assert far > 1000 * near


def _scorer(latent_weight: float) -> tuple[ScorerModule, torch.Tensor]:
    torch.manual_seed(0)
    encoder, generator = Encoder(LATENT, CHANNELS, WINDOW, 8), Generator(LATENT, CHANNELS, WINDOW, 8)
    terms = ScoreTerms(encoder, generator, Critic(CHANNELS, WINDOW, 8)).eval()
    windows = torch.randn(64, WINDOW, CHANNELS)
    with torch.no_grad():
        _, _, latent = terms(windows.transpose(1, 2))
        distance = LatentDistance.fit(latent)
        scale = float(distance(latent).median())
    module = ScorerModule(
        terms,
        torch.zeros(CHANNELS),
        torch.ones(CHANNELS),
        torch.full((CHANNELS,), 2.0),
        3.0,
        0.25,
        latent=(distance, scale, latent_weight) if latent_weight else None,
    ).eval()
    return module, windows


@pytest.mark.parametrize("latent_weight", [0.0, 0.4, 1.0])
def test_score_mixes_the_terms_as_documented_and_contributions_sum_to_it(latent_weight: float) -> None:
    module, windows = _scorer(latent_weight)
    with torch.no_grad():
        score, contributions = module(windows)
        rec, feat, latent = module.terms(windows.transpose(1, 2))
        base = 0.75 * (rec / 2.0).mean(dim=1) + 0.25 * feat / 3.0
        expected = base
        if latent_weight:
            assert module.latent_distance is not None
            lat = module.latent_distance(latent) / module.latent_scale
            expected = (1 - latent_weight) * base + latent_weight * lat
    np.testing.assert_allclose(score.numpy(), expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(contributions.sum(dim=1).numpy(), score.numpy(), rtol=1e-5)
    assert (contributions >= 0).all()


def test_latent_term_reads_about_one_on_the_windows_it_was_scaled_on() -> None:
    module, windows = _scorer(1.0)
    with torch.no_grad():
        score, _ = module(windows)
    assert float(score.median()) == pytest.approx(1.0, rel=0.05)


def test_int8_keeps_the_latent_layer_fp32_only_when_the_score_reads_the_latent(tmp_path: Path) -> None:
    """INT8 noise in the latent would dominate a Mahalanobis distance; without the term INT8 is unchanged."""
    quantised = {}
    for latent_weight in (0.0, 0.5):
        module, _ = _scorer(latent_weight)
        path = tmp_path / f"scorer-{latent_weight}.onnx"
        export_scorer(module, WINDOW, CHANNELS, path)
        model = onnx.load(str(path))
        heads = {n.name for n in model.graph.node if any("encoder.head" in p.value for p in n.metadata_props)}
        assert heads, "the encoder's output layer must be findable by its module path"
        quantised[latent_weight] = (heads, set(layers_to_quantise(model)))
    heads, layers = quantised[0.0]
    assert heads <= layers
    heads, with_latent = quantised[0.5]
    assert not heads & with_latent
    assert len(with_latent) == len(layers) - len(heads)  # nothing else changes


def test_a_score_definition_without_the_latent_fields_still_loads_with_the_term_off() -> None:
    """Bundles written before the latent term keep loading: both fields are optional, and mean 'off'."""
    older = {
        "formula": "score = (1 - w) * mean_c(rec_c / s_c) + w * feat / s_f",
        "feature_weight": 0.1,
        "channel_residual_scale": [1.0, 2.0],
        "feature_residual_scale": 3.0,
    }
    definition = ScoreDefinition.model_validate(older)
    assert definition.latent_weight == 0.0
    assert definition.latent_distance_scale is None


def test_residual_floor_lifts_only_channels_below_its_share_of_the_mean() -> None:
    medians = torch.tensor([4.0, 2.0, 0.02, 0.0])  # mean 1.505: a quiet channel and a constant one
    lifted = floored_residual_scale(medians, 0.5)
    np.testing.assert_allclose(lifted.numpy(), [4.0, 2.0, 0.7525, 0.7525], rtol=1e-6)
    # At share 1 every channel is scaled by at least the mean, so none can weigh more than an average one.
    assert float(floored_residual_scale(medians, 1.0).min()) == pytest.approx(float(medians.mean()))
    # Nothing is ever divided by zero, even when the model reconstructs every channel exactly.
    assert float(floored_residual_scale(torch.zeros(3), 1.0).min()) > 0


def test_removing_the_window_level_makes_the_score_blind_to_offsets_only() -> None:
    """`model.window_level: remove`: a constant offset per channel changes nothing, a step inside does."""
    torch.manual_seed(1)
    encoder, generator = Encoder(LATENT, CHANNELS, WINDOW, 8), Generator(LATENT, CHANNELS, WINDOW, 8)
    nets = encoder, generator, Critic(CHANNELS, WINDOW, 8)
    keep, remove = ScoreTerms(*nets).eval(), ScoreTerms(*nets, remove_level=True).eval()
    windows = torch.randn(16, CHANNELS, WINDOW)
    offset = windows + torch.tensor([3.0, -2.0, 5.0]).reshape(1, CHANNELS, 1)
    step = windows.clone()
    step[:, 0, WINDOW // 2 :] += 3.0
    with torch.no_grad():
        for original, moved in zip(remove(windows), remove(offset), strict=True):
            torch.testing.assert_close(original, moved, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(keep(windows)[0], keep(offset)[0], rtol=1e-2)
        assert not torch.allclose(remove(windows)[0], remove(step)[0], rtol=1e-2)
