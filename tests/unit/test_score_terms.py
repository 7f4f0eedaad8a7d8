"""The score's terms: reconstruction, time-local, level, variability, critic features and the optional
encoder-latent distance, each over its training tail, with contributions that sum to the score."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edge_agent.bundle import ScoreDefinition
from trainer.assemble import score_definition
from trainer.export import export_scorer
from trainer.networks import Critic, Encoder, Generator
from trainer.quantize import layers_to_quantise
from trainer.score_scales import (
    _level_gaussian,
    drifting_level_channels,
    level_generalisation,
    measure_scales,
)
from trainer.scorer_graph import (
    LatentDistance,
    ScorerModule,
    ScoreTerms,
    ScoreWeights,
    floored_residual_scale,
)
from trainer.windows import Normaliser

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


def _normal_windows(n: int, seed: int = 0) -> torch.Tensor:
    """Raw windows [n, W, C]: a slow sine per channel at a random phase and level, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, CHANNELS))
    level = rng.normal(0, 1, size=(n, 1, CHANNELS))
    values = level + np.sin(2 * np.pi * t / 24 + phase) + rng.normal(0, 0.2, size=(n, WINDOW, CHANNELS))
    return torch.from_numpy(values).float()


def _scorer(latent_weight: float = 0.0, remove_level: bool = True) -> tuple[ScorerModule, torch.Tensor]:
    torch.manual_seed(0)
    encoder, generator = Encoder(LATENT, CHANNELS, WINDOW, 8), Generator(LATENT, CHANNELS, WINDOW, 8)
    terms = ScoreTerms(encoder, generator, Critic(CHANNELS, WINDOW, 8), remove_level).eval()
    windows = _normal_windows(512)
    flat = windows.reshape(-1, CHANNELS).numpy()
    normaliser = Normaliser(flat.mean(axis=0), flat.std(axis=0), [])
    weights = ScoreWeights(latent=latent_weight, local=0.5, level=2.0)
    module = measure_scales(terms, windows.numpy(), normaliser, weights, residual_floor=0.05)
    return module, windows


@pytest.mark.parametrize("latent_weight", [0.0, 0.4])
def test_score_is_the_weighted_sum_of_its_terms_and_contributions_sum_to_it(latent_weight: float) -> None:
    module, windows = _scorer(latent_weight)
    with torch.no_grad():
        score, contributions = module(windows)
        parts = module.term_parts(windows)
    w, q = module.weights, module.tails
    expected = (
        parts["reconstruction"].sum(1) * w.reconstruction / q["reconstruction"]
        + parts["local"].sum(1) * w.local / q["local"]
        + parts["level"].sum(1) * w.level / q["level"]
        + parts["variability"].sum(1) * w.variability
        + parts["feature"] * w.feature / q["feature"]
    )
    if latent_weight:
        expected = expected + parts["latent"] * latent_weight / q["latent"]
    else:
        assert "latent" not in parts
    np.testing.assert_allclose(score.numpy(), expected.numpy(), rtol=1e-5)
    np.testing.assert_allclose(contributions.sum(dim=1).numpy(), score.numpy(), rtol=1e-5)
    assert (contributions >= 0).all()


def test_each_term_reads_at_most_one_on_99_percent_of_its_training_windows() -> None:
    module, windows = _scorer(0.5)
    with torch.no_grad():
        parts = module.term_parts(windows)
    for name in ("reconstruction", "local", "level", "feature", "latent"):
        values = parts[name].sum(1) if parts[name].dim() == 2 else parts[name]
        assert float(torch.quantile(values / module.tails[name], 0.99)) == pytest.approx(1.0, rel=0.02)
    # Variability is zero inside the band the training windows span, whatever the tail.
    assert float((parts["variability"] > 0).float().mean()) < 0.01


def test_local_term_weighs_the_newest_reading_most() -> None:
    """The same spike counts far more in the time-local term when it is the window's newest reading."""
    module, windows = _scorer()
    newest, oldest = windows[:32].clone(), windows[:32].clone()
    newest[:, -1, 0] += 6.0
    oldest[:, 0, 0] += 6.0
    with torch.no_grad():
        local_new = module.term_parts(newest)["local"][:, 0]
        local_old = module.term_parts(oldest)["local"][:, 0]
        rec_new = module.term_parts(newest)["reconstruction"][:, 0]
        rec_old = module.term_parts(oldest)["reconstruction"][:, 0]
    assert float((local_new / local_old).median()) > 5
    assert float((rec_new / rec_old).median()) < 3  # the window mean barely knows where the spike was


def test_variability_term_flags_a_stuck_channel_and_a_noise_burst_only() -> None:
    module, windows = _scorer()
    stuck, noisy = windows[:32].clone(), windows[:32].clone()
    stuck[:, -20:, 1] = stuck[:, -20:-19, 1]
    noisy[:, -20:, 2] += torch.randn(32, 20) * 2.0
    with torch.no_grad():
        normal = module.term_parts(windows[:32])["variability"]
        frozen = module.term_parts(stuck)["variability"]
        burst = module.term_parts(noisy)["variability"]
    assert float(normal.max()) < 0.5
    assert float(frozen[:, 1].min()) > 4.0 and float(frozen[:, [0, 2]].max()) < 0.5
    assert float(burst[:, 2].median()) > 0.5 and float(burst[:, [0, 1]].max()) < 0.5


def test_a_channel_flat_all_through_training_has_no_burst_band_and_the_others_keep_theirs() -> None:
    """A channel that never moved in training (a valve held shut) has no measured band: a later wiggle is
    judged by the terms that grow with its size, not as an unbounded burst; bursts elsewhere still count."""
    torch.manual_seed(0)
    encoder, generator = Encoder(LATENT, CHANNELS, WINDOW, 8), Generator(LATENT, CHANNELS, WINDOW, 8)
    terms = ScoreTerms(encoder, generator, Critic(CHANNELS, WINDOW, 8), True).eval()
    windows = _normal_windows(512)
    windows[:, :, 1] = 7.0
    flat = windows.reshape(-1, CHANNELS).numpy()
    normaliser = Normaliser(flat.mean(axis=0), np.where(flat.std(axis=0) > 0, flat.std(axis=0), 1.0), [1])
    module = measure_scales(terms, windows.numpy(), normaliser, ScoreWeights(), residual_floor=0.05)
    wiggle, burst = windows[:32].clone(), windows[:32].clone()
    wiggle[:, -20:, 1] += torch.randn(32, 20) * 0.01
    burst[:, -20:, 2] += torch.randn(32, 20) * 2.0
    with torch.no_grad():
        moved = module.term_parts(wiggle)["variability"]
        noisy = module.term_parts(burst)["variability"]
        score_normal, _ = module(windows[:32])
        score_moved, contributions = module(wiggle)
    assert float(moved[:, 1].max()) == 0.0  # with a band of 1e-6 it read 78-94
    assert float(noisy[:, 2].median()) > 0.5
    assert float((score_moved - score_normal).abs().max()) < 0.5 * float(score_normal.median())
    assert float(contributions[:, 1].max()) > 0.0  # the movement is still seen, by the size-bound terms


def test_level_term_judges_the_means_the_level_free_networks_do_not_see() -> None:
    module, windows = _scorer(remove_level=True)
    shifted = windows[:32].clone()
    shifted[:, :, 0] += 8.0
    with torch.no_grad():
        before, after = module.term_parts(windows[:32]), module.term_parts(shifted)
    torch.testing.assert_close(before["reconstruction"], after["reconstruction"], rtol=1e-3, atol=1e-4)
    assert float((after["level"][:, 0] / module.tails["level"]).min()) > 3.0


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


def _levels_of(rows: np.ndarray, window: int = 32) -> torch.Tensor:
    """Each window's mean level, windows at stride 1 in time order (as measure_scales samples them)."""
    view = np.lib.stride_tricks.sliding_window_view(rows, window, axis=0)  # [n, C, W]
    return torch.from_numpy(view.mean(axis=2).astype(np.float32))


def test_the_level_tail_grows_only_where_later_levels_leave_the_earlier_ones() -> None:
    rng = np.random.default_rng(0)
    stationary = rng.normal(size=(3000, CHANNELS))  # every stretch shows the same levels
    wandering = np.cumsum(rng.normal(size=(3000, CHANNELS)), axis=0)  # each stretch finds new levels
    steady = level_generalisation(_levels_of(stationary), guard=32)
    drifting = level_generalisation(_levels_of(wandering), guard=32)
    assert 1.0 <= steady < 1.6, steady
    assert drifting > 2.0 * steady, (drifting, steady)
    # Too few windows to leave a block out: no correction rather than noise.
    assert level_generalisation(_levels_of(stationary[:200]), guard=32) == 1.0


def test_a_channel_warming_through_the_training_rows_and_past_them_is_left_out_of_the_level_term() -> None:
    """Channel 0 rises through 400 rows and on through the holdout (a temperature in a short recording);
    channel 1 is noise around one level; channel 2 rises through the training rows but the holdout is back
    inside them; channel 3 is a slow stationary wander. Only channel 0 drifts."""
    rng = np.random.default_rng(3)
    t = np.arange(500, dtype=np.float64)
    rows = np.stack(
        [
            t / 100 + rng.normal(0, 0.1, 500),
            rng.normal(0, 1, 500),
            np.where(t < 400, t / 100, 2.0) + rng.normal(0, 0.1, 500),
            np.sin(2 * np.pi * t / 150) + rng.normal(0, 0.1, 500),
        ],
        axis=1,
    )
    levels, holdout = _levels_of(rows[:400]), _levels_of(rows[400 - 31 :])
    assert drifting_level_channels(levels, holdout).tolist() == [True, False, False, False]
    assert not drifting_level_channels(levels, None).any()  # no holdout, no evidence: nothing left out
    # Left out, the channel adds nothing to the level term; the other channels' parts are those of their own
    # Gaussian, so a level shift on them still counts.
    keep = torch.tensor([False, True, True, True])
    mean, precision = _level_gaussian(levels, keep)
    assert torch.all(precision[0] == 0) and torch.all(precision[:, 0] == 0)
    shifted = mean.clone()
    shifted[0] += 100.0
    centred = (shifted - mean).unsqueeze(0)
    assert float(torch.relu((centred @ precision) * centred).sum()) == 0.0
    shifted[1] += 5.0
    centred = (shifted - mean).unsqueeze(0)
    assert float(torch.relu((centred @ precision) * centred).sum()) > 1.0
    # Keeping every channel is the plain Gaussian to the bit: bundles without a drifting channel are the same.
    full_mean, full_precision = _level_gaussian(levels)
    assert torch.equal(_level_gaussian(levels, torch.ones(4, dtype=torch.bool))[1], full_precision)
    assert torch.equal(full_mean, mean)


def test_the_scorer_records_a_drifting_channel_and_the_score_definition_names_it() -> None:
    """measure_scales with a holdout: the warming channel is recorded on the scales, survives the automatic
    choice's reweighting, and bundle.json's score definition names it; without a holdout nothing is."""
    rng = np.random.default_rng(5)
    t = np.arange(600, dtype=np.float64)
    rows = np.stack(
        [t / 100 + rng.normal(0, 0.1, 600), rng.normal(0, 1, 600), rng.normal(0, 1, 600)], axis=1
    ).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(rows, WINDOW, axis=0).transpose(0, 2, 1)
    train, holdout = np.ascontiguousarray(windows[:400]), np.ascontiguousarray(windows[480:])
    normaliser = Normaliser(rows[:400].mean(axis=0), rows[:400].std(axis=0), [])
    torch.manual_seed(0)
    encoder, generator = Encoder(LATENT, CHANNELS, WINDOW, 8), Generator(LATENT, CHANNELS, WINDOW, 8)
    terms = ScoreTerms(encoder, generator, Critic(CHANNELS, WINDOW, 8), True).eval()
    weights = ScoreWeights(local=0.5, level=2.0)
    module = measure_scales(terms, train, normaliser, weights, 0.05, holdout=holdout)
    assert module.term_scales.level_left_out == (0,)
    reweighted = module.reweighted(dataclasses.replace(weights, level=1.0))
    names = ["inlet_temp_c", "flow", "pressure"]
    definition = score_definition([reweighted], [0], names)
    assert definition.level_left_out == ["inlet_temp_c"]
    assert ScoreDefinition.model_validate(definition.model_dump()).level_left_out == ["inlet_temp_c"]
    unchecked = measure_scales(terms, train, normaliser, weights, 0.05)
    assert score_definition([unchecked], [0], names).level_left_out == []
