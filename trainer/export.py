"""Export the scorer and generator graphs to ONNX with a dynamic batch, and check ONNX FP32 against torch.

The graphs hold the networks' convolutions as 2-D ones of height 1 (`planar_export`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from edge_agent.bundle import (
    GENERATOR_INPUT,
    GENERATOR_OUTPUT,
    SCORER_INPUT,
    SCORER_OUTPUT_CONTRIBUTIONS,
    SCORER_OUTPUT_SCORE,
)
from trainer.errors import TrainerError
from trainer.planar_export import with_planar_convolutions

log = logging.getLogger(__name__)

OPSET = 18  # onnxruntime >= 1.14 and TensorRT 10 (JetPack 6) both read it
_CHATTY_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter narrates every pass on stdout and at INFO; keep the fit's own log readable."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=False):
            logger.setLevel(level)


def _export(
    module: nn.Module, example: torch.Tensor, path: Path, inputs: list[str], outputs: list[str]
) -> None:
    batch = torch.export.Dim("batch", min=1, max=65536)
    # The graph computes what `module` does with 2-D convolutions, which onnxruntime runs faster; the
    # parity gate (checks.py) compares it with `module` itself.
    exported = with_planar_convolutions(module).eval()
    with _quiet_exporter():
        program = torch.onnx.export(
            exported,
            (example,),
            dynamo=True,
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            external_data=False,
            verbose=False,
        )
    if program is None:
        raise TrainerError(f"torch.onnx.export returned nothing for {path.name}")
    program.save(str(path))


def export_scorer(scorer: nn.Module, window_len: int, n_channels: int, path: Path) -> None:
    """scorer.onnx: windows [batch, window, channels] -> score [batch], contributions [batch, channels]."""
    example = torch.zeros(2, window_len, n_channels)
    _export(scorer, example, path, [SCORER_INPUT], [SCORER_OUTPUT_SCORE, SCORER_OUTPUT_CONTRIBUTIONS])


def export_generator(generator: nn.Module, latent_dim: int, path: Path) -> None:
    """generator.onnx: latent [batch, latent] -> windows [batch, window, channels] in raw units."""
    _export(generator, torch.zeros(2, latent_dim), path, [GENERATOR_INPUT], [GENERATOR_OUTPUT])


def torch_scores(
    scorer: nn.Module, windows: npt.NDArray[np.float32], batch: int = 512
) -> npt.NDArray[np.float32]:
    """Scores from the torch module, batched, for parity checks."""
    parts = []
    with torch.no_grad():
        for start in range(0, len(windows), batch):
            score, _ = scorer(torch.from_numpy(windows[start : start + batch]))
            parts.append(score.numpy())
    return np.concatenate(parts).astype(np.float32)
