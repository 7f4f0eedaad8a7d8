"""The TensorRT backend: a clear error where it cannot run, never a silent fallback; real runs on a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edge_agent.backends import open_scorer
from edge_agent.backends.tensorrt import TRT_PROVIDER
from edge_agent.bundle import load_bundle
from edge_agent.errors import BackendUnavailable

HAS_TENSORRT = TRT_PROVIDER in ort.get_available_providers()


@pytest.mark.skipif(HAS_TENSORRT, reason="this machine can run TensorRT")
def test_tensorrt_without_it_is_an_error_naming_what_is_missing(tiny_bundle: Path) -> None:
    with pytest.raises(BackendUnavailable) as caught:
        open_scorer(load_bundle(tiny_bundle), backend="tensorrt", precision="int8")
    assert TRT_PROVIDER in str(caught.value) and "onnxruntime-gpu" in str(caught.value)


@pytest.mark.skipif(HAS_TENSORRT, reason="this machine can run TensorRT")
def test_auto_uses_onnxruntime_where_tensorrt_cannot_run(tiny_bundle: Path) -> None:
    scorer = open_scorer(load_bundle(tiny_bundle), backend="auto", precision="int8")
    assert scorer.name.startswith("onnxruntime:")


NO_TRT_REASON = "this onnxruntime has no TensorRT provider (needs onnxruntime-gpu with TensorRT and a GPU)"


@pytest.mark.skipif(not HAS_TENSORRT, reason=NO_TRT_REASON)
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_tensorrt_engines_build_cache_and_match_onnxruntime(tiny_bundle: Path, precision: str) -> None:
    bundle = load_bundle(tiny_bundle)
    scorer = open_scorer(bundle, backend="tensorrt", precision=precision)
    assert scorer.name.startswith("tensorrt:")
    reference = open_scorer(bundle, backend="onnxruntime", precision="fp32")
    windows = np.random.default_rng(1).standard_normal((64, 32, 3)).astype(np.float32) + 5
    ours, theirs = scorer.score(windows).scores, reference.score(windows).scores
    assert np.corrcoef(np.argsort(np.argsort(ours)), np.argsort(np.argsort(theirs)))[0, 1] > 0.95
    parity_files = list((tiny_bundle / "engines").glob(f"*-{precision}/parity.json"))
    assert parity_files, "the first build records parity beside the engine"
