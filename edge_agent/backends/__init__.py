"""Scoring backends and the one function that opens them for a bundle."""

from __future__ import annotations

import logging

from edge_agent.backends.base import ScoreBatch, Scorer
from edge_agent.bundle import SCORER_FP32, SCORER_INT8, Bundle
from edge_agent.errors import BackendUnavailable, ConfigError

log = logging.getLogger(__name__)

PRECISION_FILES = {"fp32": SCORER_FP32, "int8": SCORER_INT8}
BACKENDS = ("onnxruntime", "tensorrt", "auto")

__all__ = ["BACKENDS", "PRECISION_FILES", "ScoreBatch", "Scorer", "open_scorer"]


def open_scorer(
    bundle: Bundle, backend: str = "onnxruntime", precision: str = "int8", threads: int = 1
) -> Scorer:
    """Open the scorer graph of a bundle on a backend; unknown names are errors, never silent fallbacks."""
    if precision not in PRECISION_FILES:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {sorted(PRECISION_FILES)}")
    model = bundle.model_path(PRECISION_FILES[precision])
    if backend == "auto":
        try:
            return open_scorer(bundle, "tensorrt", precision, threads)
        except BackendUnavailable as err:
            log.info("backend auto: TensorRT not used (%s); onnxruntime on CPU", err)
            return open_scorer(bundle, "onnxruntime", precision, threads)
    if backend == "tensorrt":
        from edge_agent.backends.tensorrt import TensorRtScorer

        return TensorRtScorer(bundle, precision)
    if backend == "onnxruntime":
        from edge_agent.backends.onnx_runtime import OnnxRuntimeScorer

        return OnnxRuntimeScorer(
            model, bundle.manifest.window_len, len(bundle.manifest.channels), threads=threads
        )
    raise ConfigError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
