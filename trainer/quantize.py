"""Static INT8 (QDQ) quantisation of the scorer with onnxruntime's tools, calibrated on normal windows.

What gets quantised was measured, not guessed (see README, "INT8"): the encoder's and critic's hidden
layers. These stay FP32:
- the residual arithmetic that turns activations into a score: in INT8 buckets the small differences
  between normal and anomalous residuals vanish;
- the generator's output layer, and its hidden layers unless the fit's own check shows they lose nothing
  (`quantize.generator_layers`, trainer/int8_choice.py): generator noise lands directly in every window's
  reconstruction residual and on a small 3-channel model buried spikes under it;
- the first layer of the encoder and of the critic: their input is the window itself, and an activation
  range calibrated on normal windows clips exactly the large excursions that make an anomaly;
- the encoder's output layer, when the score uses the latent distance (`score.latent_weight` > 0): the
  distance weighs the latent's narrow directions heavily, so INT8 noise there would dominate it.
Activations are symmetric INT8 (zero point 0), which TensorRT needs to build engines from the QDQ graph.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edge_agent.bundle import SCORER_INPUT
from trainer.errors import TrainerError

log = logging.getLogger(__name__)

QUANTISABLE_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
QUANTISED_SCOPES = ("terms.encoder.", "terms.critic.")  # module paths inside ScorerModule
GENERATOR_STACK_SCOPE = "terms.generator.upsample."  # its last layer writes the reconstruction: kept FP32
INPUT_LAYER_SCOPES = ("terms.encoder.body.0'", "terms.critic.body.0'")
LATENT_LAYER_SCOPE = "terms.encoder.head'"  # kept FP32 when the score reads the latent itself
LATENT_DISTANCE_SCOPE = "latent_distance"
_SCOPE_KEY = "pkg.torch.onnx.name_scopes"  # where torch.onnx records each node's module path


class _WindowReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds normal windows to the calibrator in small batches."""

    def __init__(self, windows: npt.NDArray[np.float32], batch: int = 32) -> None:
        self._batches = [windows[i : i + batch] for i in range(0, len(windows), batch)]
        self._next = 0

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        if self._next >= len(self._batches):
            return None
        batch = self._batches[self._next]
        self._next += 1
        return {SCORER_INPUT: np.ascontiguousarray(batch, dtype=np.float32)}


def _scopes(model: onnx.ModelProto) -> dict[str, str]:
    """Each node's module paths, as torch.onnx recorded them (the repr of a list of paths)."""
    return {
        node.name: next((prop.value for prop in node.metadata_props if prop.key == _SCOPE_KEY), "")
        for node in model.graph.node
    }


def generator_hidden_layers(model: onnx.ModelProto) -> list[str]:
    """The generator's up-sampling layers in an exported scorer graph, its output layer excepted.

    A member's output layer is the last layer of its up-sampling stack in graph order (ONNX nodes are
    topologically sorted); each member (`members.N.`) has its own stack.
    """
    scopes_of = _scopes(model)
    stacks: dict[str, list[str]] = {}
    for node in model.graph.node:
        found = re.search(r"'([^']*)" + re.escape(GENERATOR_STACK_SCOPE), scopes_of[node.name])
        if node.op_type in QUANTISABLE_OPS and found:
            stacks.setdefault(found.group(1), []).append(node.name)
    return [name for layers in stacks.values() for name in layers[:-1]]


def layers_to_quantise(model: onnx.ModelProto, with_generator: bool = False) -> list[str]:
    """Names of the encoder's and critic's hidden layers in an exported scorer graph, and with
    `with_generator` the generator's hidden layers too."""
    scopes_of = _scopes(model)
    kept_fp32: tuple[str, ...] = INPUT_LAYER_SCOPES
    if any(LATENT_DISTANCE_SCOPE in scopes for scopes in scopes_of.values()):
        # The latent distance weighs narrow directions heavily, so INT8 noise in the latent would dominate it.
        kept_fp32 = (*INPUT_LAYER_SCOPES, LATENT_LAYER_SCOPE)
    chosen = []
    for node in model.graph.node:
        if node.op_type not in QUANTISABLE_OPS:
            continue
        scopes = scopes_of[node.name]
        if any(s in scopes for s in QUANTISED_SCOPES) and not any(s in scopes for s in kept_fp32):
            chosen.append(node.name)
    if not chosen:
        raise TrainerError("no encoder/critic layers found in the exported scorer graph: cannot quantise it")
    if with_generator:
        chosen += generator_hidden_layers(model)
    return chosen


def quantize_scorer(
    fp32_path: Path, int8_path: Path, calibration: npt.NDArray[np.float32], with_generator: bool = False
) -> list[str]:
    """Write scorer.int8.onnx from scorer.onnx; calibration windows are raw normal windows."""
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # No graph optimisation here: it would rename nodes and drop the module paths used to pick layers.
        quant_pre_process(str(fp32_path), str(prepared), skip_optimization=True, skip_symbolic_shape=True)
        layers = layers_to_quantise(onnx.load(str(prepared)), with_generator)
        quantize_static(
            str(prepared),
            str(int8_path),
            calibration_data_reader=_WindowReader(calibration),
            quant_format=QuantFormat.QDQ,
            nodes_to_quantize=layers,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True},
        )
    log.info("INT8: quantised %d layers%s", len(layers), " (generator's hidden ones too)" * with_generator)
    return layers
