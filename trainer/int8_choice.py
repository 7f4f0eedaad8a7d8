"""Whether the INT8 graph quantises the generator's hidden layers too: measured per fit, kept only when free.

Why per fit: on the demo's pump data quantising them lost nothing (every kind's AUROC and recall the same to
0.01) and scored about 1.3x faster, while on a small 3-channel model (README, "INT8") the generator's noise
in every reconstruction buried spikes. Which case a user's data is cannot be known before the fit, so each
fit scores both INT8 graphs on its held-out windows and injected anomalies, each at its own threshold by the
bundle's rule, and keeps the faster one only when it detects as well. Both graphs see the same windows, so
the differences are the quantisation's, not sampling noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

INT8_WITH_GENERATOR = "scorer.int8-generator.onnx"  # a candidate in the staging folder, never published
MAX_RECALL_LOSS = 0.02  # per injected kind, at each graph's own threshold
MAX_AUROC_LOSS = 0.005  # per injected kind


@dataclass(frozen=True, slots=True)
class Int8LayerChoice:
    """The INT8 graph served and what both candidates detected, for bundle.json's validation."""

    with_generator: bool
    encoder_critic: Mapping[str, Any]  # detection_metrics of the graph with the generator FP32
    generator_too: Mapping[str, Any]  # and with its hidden layers INT8

    def as_dict(self) -> dict[str, object]:
        """JSON for validation.int8_layers."""
        keys = ("auroc_synthetic", "auroc_by_kind", "recall_by_kind", "threshold")
        return {
            "generator_hidden_layers": "int8" if self.with_generator else "fp32",
            "rule": f"the generator's hidden layers are quantised when no injected kind loses more than "
            f"{MAX_AUROC_LOSS} of AUROC or {MAX_RECALL_LOSS} of recall at the graph's own threshold",
            "candidates": {
                "generator_fp32": {k: self.encoder_critic[k] for k in keys},
                "generator_int8": {k: self.generator_too[k] for k in keys},
            },
        }


def generator_layers_win(encoder_critic: Mapping[str, Any], generator_too: Mapping[str, Any]) -> bool:
    """True when the graph with the generator quantised detects every kind as well (`checks.detection_metrics`
    of each graph on the same windows)."""
    for kind, recall in encoder_critic["recall_by_kind"].items():
        if generator_too["recall_by_kind"][kind] < recall - MAX_RECALL_LOSS:
            return False
        if generator_too["auroc_by_kind"][kind] < encoder_critic["auroc_by_kind"][kind] - MAX_AUROC_LOSS:
            return False
    return True
