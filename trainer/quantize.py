"""Static INT8 (QDQ) quantisation of the scorer with onnxruntime's tools, calibrated on normal windows.

Only the network layers (Conv, ConvTranspose, Gemm/MatMul) are quantised. The residual arithmetic that turns
activations into a score (squares, means, divisions) stays FP32: quantising it flattens the small
differences between normal and anomalous residuals into the same INT8 buckets and costs detection quality.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edge_agent.bundle import SCORER_INPUT

log = logging.getLogger(__name__)

QUANTISED_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul"]


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


def quantize_scorer(fp32_path: Path, int8_path: Path, calibration: npt.NDArray[np.float32]) -> None:
    """Write scorer.int8.onnx from scorer.onnx; calibration windows are raw normal windows."""
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(int8_path),
            calibration_data_reader=_WindowReader(calibration),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTISED_OPS,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True},
        )
