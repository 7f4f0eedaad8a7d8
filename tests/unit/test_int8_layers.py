"""Which layers the INT8 graph quantises: the generator's hidden ones only when a fit shows they are free."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from tests.unit.unit_scorer import fresh_scorer
from trainer.export import export_scorer
from trainer.int8_choice import MAX_RECALL_LOSS, generator_layers_win
from trainer.quantize import generator_hidden_layers, quantize_scorer
from trainer.scorer_graph import MeanScorer

LATENT, CHANNELS, WINDOW, WIDTH = 4, 3, 32, 8


def _scope(node: onnx.NodeProto) -> str:
    return " ".join(p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes")


def test_each_members_generator_gives_its_hidden_layers_and_keeps_its_output_layer(tmp_path: Path) -> None:
    path = tmp_path / "scorer.onnx"
    members = [fresh_scorer(LATENT, CHANNELS, WINDOW, WIDTH, seed=seed) for seed in (0, 1)]
    export_scorer(MeanScorer(members), WINDOW, CHANNELS, path)
    model = onnx.load(str(path))
    nodes = {node.name: node for node in model.graph.node}
    hidden = generator_hidden_layers(model)
    scopes = [_scope(nodes[name]) for name in hidden]
    assert len(hidden) == 6  # three up-sampling layers per member
    for member in ("members.0.", "members.1."):
        assert sum(f"{member}terms.generator.upsample." in scope for scope in scopes) == 3
    assert not any("upsample.6'" in scope for scope in scopes)  # the output layers


def _dequantised_weights(model: onnx.ModelProto) -> set[str]:
    """Nodes whose weight input comes out of a DequantizeLinear: the layers the QDQ graph quantised."""
    produced_by = {out: node.op_type for node in model.graph.node for out in node.output}
    return {
        node.name
        for node in model.graph.node
        if node.op_type in ("Conv", "Gemm") and produced_by.get(node.input[1]) == "DequantizeLinear"
    }


def test_quantising_with_the_generator_adds_only_its_hidden_layers(tmp_path: Path) -> None:
    path = tmp_path / "scorer.onnx"
    export_scorer(fresh_scorer(LATENT, CHANNELS, WINDOW, WIDTH, seed=0), WINDOW, CHANNELS, path)
    windows = np.random.default_rng(0).normal(size=(64, WINDOW, CHANNELS)).astype(np.float32)
    quantised = {}
    for with_generator in (False, True):
        out = tmp_path / f"int8-{with_generator}.onnx"
        quantize_scorer(path, out, windows, with_generator=with_generator)
        model = onnx.load(str(out))
        layers = _dequantised_weights(model)
        quantised[with_generator] = {_scope(n) for n in model.graph.node if n.name in layers}
    added = quantised[True] - quantised[False]
    assert quantised[False] <= quantised[True]
    assert len(added) == 3 and all("generator.upsample." in scope for scope in added)
    assert not any("generator" in scope for scope in quantised[False])


def _metrics(recall: float, area: float) -> dict[str, dict[str, float]]:
    return {
        "recall_by_kind": {"spike": recall, "stuck": 0.9},
        "auroc_by_kind": {"spike": area, "stuck": 0.99},
    }


def test_the_generator_is_quantised_only_when_no_kind_loses_detection() -> None:
    base = _metrics(0.80, 0.950)
    assert generator_layers_win(base, _metrics(0.80 - MAX_RECALL_LOSS / 2, 0.948))
    assert generator_layers_win(base, _metrics(0.85, 0.960))
    assert not generator_layers_win(base, _metrics(0.80 - 2 * MAX_RECALL_LOSS, 0.950))  # spikes buried
    assert not generator_layers_win(base, _metrics(0.80, 0.930))  # ranked worse at the same recall
