"""The exported graphs run the networks' 1-D convolutions as 2-D ones: same numbers, faster kernels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edge_agent.bundle import SCORER_INPUT
from tests.unit.unit_scorer import fresh_scorer
from trainer.export import export_scorer
from trainer.networks import Critic, Encoder, Generator
from trainer.planar_export import PlanarSequential, PolyphaseTranspose, with_planar_convolutions
from trainer.quantize import layers_to_quantise

LATENT, CHANNELS, WINDOW, WIDTH = 6, 5, 32, 8


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [(4, 2, 1), (5, 3, 1), (3, 1, 1), (6, 2, 2), (2, 2, 0)],
)
def test_a_polyphase_convolution_computes_the_transposed_one(kernel: int, stride: int, padding: int) -> None:
    torch.manual_seed(kernel * 10 + stride)
    layer = nn.ConvTranspose1d(7, 4, kernel, stride=stride, padding=padding)
    inputs = torch.randn(3, 7, 11)
    with torch.no_grad():
        expected = layer(inputs)
        got = PolyphaseTranspose(layer)(inputs.unsqueeze(2)).squeeze(2)
    assert got.shape == expected.shape == (3, 4, 11 * stride)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_transposed_convolution_without_an_exact_polyphase_form_is_left_one_dimensional() -> None:
    """Output padding changes the length rule, so the stack stays as it was rather than compute otherwise.

    Kernel 4, stride 2, padding 1 has a polyphase form without it: only the output padding rules it out."""
    stack = nn.Sequential(nn.ConvTranspose1d(4, 4, 4, stride=2, padding=1, output_padding=1), nn.LeakyReLU())
    holder = nn.Sequential(nn.Identity())
    holder.add_module("stack", stack)
    rewritten = with_planar_convolutions(holder)
    assert type(rewritten.stack) is nn.Sequential
    assert isinstance(rewritten.stack[0], nn.ConvTranspose1d)


def test_the_planar_networks_compute_what_the_fitted_ones_do_and_leave_them_untouched() -> None:
    torch.manual_seed(0)
    generator = Generator(LATENT, CHANNELS, WINDOW, WIDTH).eval()
    encoder = Encoder(LATENT, CHANNELS, WINDOW, WIDTH).eval()
    critic = Critic(CHANNELS, WINDOW, WIDTH).eval()
    latents, windows = torch.randn(16, LATENT), torch.randn(16, CHANNELS, WINDOW)
    with torch.no_grad():
        pairs = [
            (generator(latents), with_planar_convolutions(generator)(latents)),
            (encoder(windows), with_planar_convolutions(encoder)(windows)),
            (critic.features(windows), with_planar_convolutions(critic).features(windows)),  # type: ignore[operator]
        ]
    for fitted, planar in pairs:
        torch.testing.assert_close(planar, fitted, rtol=1e-5, atol=1e-5)
    assert isinstance(with_planar_convolutions(encoder).body, PlanarSequential)
    assert type(encoder.body) is nn.Sequential and isinstance(encoder.body[0], nn.Conv1d)


def test_the_exported_scorer_is_planar_matches_torch_and_quantises_the_same_layers(tmp_path: Path) -> None:
    scorer = fresh_scorer(LATENT, CHANNELS, WINDOW, WIDTH, seed=1)
    path = tmp_path / "scorer.onnx"
    export_scorer(scorer, WINDOW, CHANNELS, path)
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert "ConvTranspose" not in ops and "Conv" in ops
    weights = {init.name: len(init.dims) for init in model.graph.initializer}
    conv_weights = [weights[node.input[1]] for node in model.graph.node if node.op_type == "Conv"]
    assert conv_weights and set(conv_weights) == {4}  # every convolution is 2-D

    scopes = {
        node.name: " ".join(p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes")
        for node in model.graph.node
    }
    chosen = [scopes[name] for name in layers_to_quantise(model)]
    hidden = [f"terms.{net}.body.{i}'" for net in ("encoder", "critic") for i in (2, 4)]
    for layer in hidden:
        assert any(layer in scope for scope in chosen), layer
    assert not any("generator" in scope or "body.0'" in scope for scope in chosen)

    windows = np.random.default_rng(2).normal(size=(40, WINDOW, CHANNELS)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_score, onnx_contributions = session.run(None, {SCORER_INPUT: windows})
    with torch.no_grad():
        torch_score, torch_contributions = scorer(torch.from_numpy(windows))
    np.testing.assert_allclose(onnx_score, torch_score.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(onnx_contributions, torch_contributions.numpy(), rtol=1e-4, atol=1e-5)
