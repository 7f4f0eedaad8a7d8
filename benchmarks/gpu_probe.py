"""What a GPU machine offers the agent's TensorRT path, and the scorer's cost on that GPU.

Usage: python -m benchmarks.gpu_probe --bundle DIR [--out FILE]
Records: the GPU, whether TensorRT's libraries (libnvinfer) and onnxruntime's TensorRT execution provider
are present, what the agent's `tensorrt` and `auto` backends do there, and, where torch sees CUDA, the
scorer's per-window cost in torch eager on the GPU against ONNX Runtime FP32 on the CPU, measured side by
side in this one run. Writes JSON; it never installs anything.
"""

from __future__ import annotations

import argparse
import ctypes.util
import json
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np

from benchmarks.scorer_speed import time_per_window
from edge_agent.backends import open_scorer
from edge_agent.bundle import load_bundle
from edge_agent.errors import BackendUnavailable
from edge_agent.vocabulary import Precision

BATCHES = (1, 64, 512, 4096)


def _gpu() -> str:
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return "no nvidia-smi"
    query = "--query-gpu=name,driver_version,memory.total"
    out = subprocess.run([tool, query, "--format=csv,noheader"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or out.stderr.strip()


def _tensorrt_libraries() -> dict[str, object]:
    found = {name: ctypes.util.find_library(name) for name in ("nvinfer", "nvinfer_lean", "nvonnxparser")}
    modules: dict[str, object] = {}
    for module in ("tensorrt", "tensorrt_lean"):
        try:
            imported = __import__(module)
            modules[module] = {
                "version": str(getattr(imported, "__version__", "?")),
                "has_builder": hasattr(imported, "Builder"),
            }
        except Exception as err:  # noqa: BLE001 - recording why, whatever it is
            modules[module] = f"import failed: {type(err).__name__}: {err}"
    return {"shared_libraries": found, "python_modules": modules}


def _backend_outcomes(bundle_dir: Path) -> dict[str, str]:
    bundle = load_bundle(bundle_dir)
    outcomes = {}
    for backend in ("tensorrt", "auto"):
        for precision in (Precision.FP32, Precision.INT8):
            try:
                scorer = open_scorer(bundle, backend=backend, precision=precision)
                outcomes[f"{backend}/{precision}"] = f"opened: {type(scorer).__name__}"
            except BackendUnavailable as err:
                outcomes[f"{backend}/{precision}"] = f"BackendUnavailable: {err}"
    return outcomes


def _speeds(bundle_dir: Path) -> dict[str, object]:
    import torch

    from benchmarks.scorer_speed import torch_scorer

    bundle = load_bundle(bundle_dir)
    window, channels = bundle.manifest.window_len, len(bundle.manifest.channels)
    rng = np.random.default_rng(0)
    ort_fp32 = open_scorer(bundle, precision="fp32", threads=1)
    result: dict[str, dict[str, float]] = {"ort_fp32_cpu_1_thread": {}, "torch_eager_cuda": {}}
    for batch in BATCHES:
        windows = rng.normal(size=(batch, window, channels)).astype(np.float32)
        result["ort_fp32_cpu_1_thread"][str(batch)] = time_per_window(ort_fp32.score, windows)
    if torch.cuda.is_available():
        module = torch_scorer(bundle.manifest.latent_dim, channels, window).cuda().eval()
        for batch in BATCHES:
            windows_gpu = torch.randn(batch, window, channels, device="cuda")

            def run(w: torch.Tensor, m: torch.nn.Module = module) -> None:
                with torch.inference_mode():
                    m(w)

            run(windows_gpu)
            torch.cuda.synchronize()
            cost = time_per_window(run, windows_gpu, sync=torch.cuda.synchronize)
            result["torch_eager_cuda"][str(batch)] = cost
    ratios = {
        b: result["ort_fp32_cpu_1_thread"][b] / result["torch_eager_cuda"][b]
        for b in result["torch_eager_cuda"]
    }
    return {"us_per_window": result, "cuda_speedup_over_ort_cpu": ratios, "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("gpu_probe.json"))
    args = parser.parse_args()
    import onnxruntime as ort

    report: dict[str, object] = {
        "python": platform.python_version(),
        "gpu": _gpu(),
        "onnxruntime": {"version": ort.__version__, "providers": ort.get_available_providers()},
        "tensorrt": _tensorrt_libraries(),
        "agent_backends": _backend_outcomes(args.bundle),
    }
    report["speed"] = _speeds(args.bundle)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
