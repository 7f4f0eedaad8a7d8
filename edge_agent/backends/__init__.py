"""Scoring backends and the one function that opens them for a bundle."""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge_agent.backends.base import ScoreBatch, Scorer
from edge_agent.bundle import SCORER_FP32, SCORER_INT8, Bundle
from edge_agent.errors import BackendUnavailable, ConfigError
from edge_agent.vocabulary import Backend, Precision, names

log = logging.getLogger(__name__)

PRECISION_FILES: dict[str, str] = {Precision.FP32: SCORER_FP32, Precision.INT8: SCORER_INT8}
BACKENDS = tuple(names(Backend))

__all__ = ["BACKENDS", "PRECISION_FILES", "ScoreBatch", "Scorer", "open_scorer"]


def _onnxruntime(bundle: Bundle, precision: Precision, threads: int) -> Scorer:
    from edge_agent.backends.onnx_runtime import OnnxRuntimeScorer

    model = bundle.model_path(PRECISION_FILES[precision])
    return OnnxRuntimeScorer(
        model, bundle.manifest.window_len, len(bundle.manifest.channels), threads=threads
    )


def _tensorrt(bundle: Bundle, precision: Precision, threads: int) -> Scorer:
    from edge_agent.backends.tensorrt import TensorRtScorer

    del threads  # TensorRT sizes its own work
    return TensorRtScorer(bundle, precision)


def _auto(bundle: Bundle, precision: Precision, threads: int) -> Scorer:
    try:
        return _tensorrt(bundle, precision, threads)
    except BackendUnavailable as err:
        log.info("backend auto: TensorRT not used (%s); onnxruntime on CPU", err)
        return _onnxruntime(bundle, precision, threads)


_OPENERS: dict[Backend, Callable[[Bundle, Precision, int], Scorer]] = {
    Backend.ONNXRUNTIME: _onnxruntime,
    Backend.TENSORRT: _tensorrt,
    Backend.AUTO: _auto,
}


def open_scorer(
    bundle: Bundle, backend: str = Backend.ONNXRUNTIME, precision: str = Precision.INT8, threads: int = 1
) -> Scorer:
    """Open the scorer graph of a bundle on a backend; unknown names are errors, never silent fallbacks."""
    try:
        chosen_precision = Precision(precision)
    except ValueError:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {names(Precision)}") from None
    try:
        chosen_backend = Backend(backend)
    except ValueError:
        raise ConfigError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}") from None
    return _OPENERS[chosen_backend](bundle, chosen_precision, threads)
