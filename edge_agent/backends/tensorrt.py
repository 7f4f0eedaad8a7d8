"""TensorRT backend, through onnxruntime's TensorRT execution provider.

Why the execution provider rather than the TensorRT runtime directly: the bundle's graphs are ONNX with a
dynamic batch and QDQ quantisation, which the provider hands to TensorRT as they are (FP16 from
`scorer.onnx`, explicit INT8 from the QDQ `scorer.int8.onnx`), and it owns engine building, caching, CUDA
memory and streams. The direct runtime would need cuda-python or pycuda on the gateway and our own copies of
all of that. The cost is a dependency on an onnxruntime-gpu build with TensorRT (JetPack: NVIDIA's Jetson
wheels; x86: `onnxruntime-gpu`).

Engines are cached in `<bundle>/engines/<gpu>-trt<version>-<precision>/`, so a new GPU or TensorRT version
builds afresh instead of loading an incompatible engine. The first build checks parity against ONNX
Runtime FP32 on CPU and writes it to `parity.json` in that folder. When TensorRT cannot run, this backend
raises BackendUnavailable naming what is missing. It never falls back to another provider or precision.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.backends.base import ScoreBatch
from edge_agent.backends.onnx_runtime import OnnxRuntimeScorer
from edge_agent.bundle import SCORER_FP32, SCORER_INT8, Bundle
from edge_agent.errors import BackendUnavailable
from edge_agent.vocabulary import Precision

log = logging.getLogger(__name__)

TRT_PROVIDER = "TensorrtExecutionProvider"
PARITY_WINDOWS = 256


def _gpu_name() -> str:
    """The GPU's name: nvidia-smi on x86, the device-tree model on Jetson (which has no nvidia-smi)."""
    tool = shutil.which("nvidia-smi")
    if tool is not None:
        result = subprocess.run(
            [tool, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip().splitlines()[0]
    model = Path("/proc/device-tree/model")
    if model.is_file():
        return model.read_text(errors="replace").strip("\0 \n")
    raise BackendUnavailable("tensorrt backend: no NVIDIA GPU found (no nvidia-smi, no Jetson device tree)")


def _tensorrt_version() -> str:
    try:
        import tensorrt
    except ImportError:
        return "unknown"
    return str(tensorrt.__version__)


def engine_cache_dir(bundle: Bundle, precision: str) -> Path:
    """Where this GPU and TensorRT version keep their engines for one precision of one bundle."""
    identity = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{_gpu_name()}-trt{_tensorrt_version()}")
    return bundle.path / "engines" / f"{identity}-{precision}"


def check_tensorrt_available() -> None:
    """Raise BackendUnavailable unless this onnxruntime can run TensorRT."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise BackendUnavailable(f"tensorrt backend: onnxruntime is not installed ({err})") from None
    providers = ort.get_available_providers()
    if TRT_PROVIDER not in providers:
        raise BackendUnavailable(
            f"tensorrt backend: this onnxruntime ({ort.__version__}) has no {TRT_PROVIDER} "
            f"(it has {', '.join(providers)}); install onnxruntime-gpu built with TensorRT"
        )


class TensorRtScorer:
    """A scorer graph run by TensorRT: FP16 for the FP32 graph, explicit INT8 for the QDQ graph."""

    def __init__(self, bundle: Bundle, precision: str) -> None:
        check_tensorrt_available()
        int8 = Precision(precision) is Precision.INT8
        manifest = bundle.manifest
        self._shape = (manifest.window_len, len(manifest.channels))
        model = bundle.model_path(SCORER_INT8 if int8 else SCORER_FP32)
        cache = engine_cache_dir(bundle, precision)
        fresh = not cache.exists()
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise BackendUnavailable(f"tensorrt backend: cannot write engine cache {cache}: {err}") from None
        options = {
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_fp16_enable": True,
            "trt_int8_enable": int8,  # QDQ graph: TensorRT's explicit quantisation
            # One profile covering every batch the agent sends, built once rather than per new shape.
            "trt_profile_min_shapes": f"windows:1x{self._shape[0]}x{self._shape[1]}",
            "trt_profile_opt_shapes": f"windows:64x{self._shape[0]}x{self._shape[1]}",
            "trt_profile_max_shapes": f"windows:1024x{self._shape[0]}x{self._shape[1]}",
        }
        started = time.perf_counter()
        self._inner = OnnxRuntimeScorer(model, *self._shape, providers=[(TRT_PROVIDER, options)])
        if self._inner.providers()[0] != TRT_PROVIDER:
            raise BackendUnavailable(
                f"tensorrt backend: onnxruntime did not place the graph on TensorRT "
                f"(got {self._inner.providers()}); see the log for the provider's error"
            )
        self.name = f"tensorrt:{model.name}:{'int8' if int8 else 'fp16'}"
        if fresh:
            parity = self._parity(bundle, model)
            parity["build_seconds"] = round(time.perf_counter() - started, 2)
            (cache / "parity.json").write_text(json.dumps(parity, indent=2) + "\n")
            log.info("tensorrt engine built in %s: %s", cache, parity)

    def _parity(self, bundle: Bundle, model: Path) -> dict[str, float]:
        """Scores against ONNX Runtime FP32 on CPU, on windows around the training distribution."""
        manifest = bundle.manifest
        rng = np.random.default_rng(0)
        mean = np.asarray(manifest.normalisation.mean, dtype=np.float32)
        scale = np.asarray(manifest.normalisation.scale, dtype=np.float32)
        windows = (mean + scale * rng.standard_normal((PARITY_WINDOWS, *self._shape))).astype(np.float32)
        reference = OnnxRuntimeScorer(bundle.model_path(SCORER_FP32), *self._shape).score(windows).scores
        ours = self.score(windows).scores
        ranks = np.argsort(np.argsort(reference)), np.argsort(np.argsort(ours))
        return {
            "windows": PARITY_WINDOWS,
            "max_abs_diff": float(np.max(np.abs(ours - reference))),
            "median_rel_diff": float(
                np.median(np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-6))
            ),
            "rank_correlation": float(np.corrcoef(ranks[0], ranks[1])[0, 1]),
        }

    def score(self, windows: npt.NDArray[np.float32]) -> ScoreBatch:
        """Score raw windows [batch, window, channels]."""
        return self._inner.score(windows)

    def warmup(self) -> float:
        """One inference (engines load or build lazily on the first)."""
        return self._inner.warmup()

    def close(self) -> None:
        """Release the session."""
        self._inner.close()
