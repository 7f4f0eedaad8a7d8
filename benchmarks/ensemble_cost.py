"""What `model.members` costs on the edge: microseconds per window and graph size, 1 to N members.

Usage: python -m benchmarks.ensemble_cost [--members 1,2,3] [--channels 8]
Each graph is the real export path (MeanScorer of ScorerModules, ONNX FP32, the trainer's INT8
quantisation) with fresh weights, which do not change the cost. All sizes are measured side by side in
this one run, one ORT thread, and reported as ratios to the one-member graph.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.environment import write_result
from benchmarks.scorer_speed import time_per_window, torch_scorer
from edge_agent.backends.onnx_runtime import OnnxRuntimeScorer
from trainer.config import TrainConfig
from trainer.export import export_scorer
from trainer.quantize import quantize_scorer
from trainer.scorer_graph import MeanScorer

BATCHES = (1, 64)


def scorer_of(members: int, latent: int, channels: int, window: int) -> torch.nn.Module:
    """The graph a bundle with `members` fits exports (one member: the plain scorer module)."""
    modules = [torch_scorer(latent, channels, window) for _ in range(members)]
    return modules[0] if members == 1 else MeanScorer(modules).eval()


def measure(counts: list[int], channels: int) -> dict[str, object]:
    model = TrainConfig().model
    window, latent = model.window_len, model.latent_dim
    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(128, window, channels)).astype(np.float32)
    rows: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for members in counts:
            torch.manual_seed(members)
            fp32, int8 = Path(scratch) / f"m{members}.onnx", Path(scratch) / f"m{members}.int8.onnx"
            export_scorer(scorer_of(members, latent, channels, window), window, channels, fp32)
            quantize_scorer(fp32, int8, calibration)
            timings: dict[str, float] = {}
            for name, path in (("fp32", fp32), ("int8", int8)):
                scorer = OnnxRuntimeScorer(path, window, channels, threads=1)
                scorer.warmup()
                for batch in BATCHES:
                    windows = rng.normal(size=(batch, window, channels)).astype(np.float32)
                    timings[f"{name}_batch{batch}"] = time_per_window(scorer.score, windows)
            rows[str(members)] = {
                "us_per_window": timings,
                "bytes": {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size},
            }
    base = rows[str(counts[0])]["us_per_window"]
    for row in rows.values():
        row["ratio_to_first"] = {
            key: us / base[key]  # type: ignore[index]
            for key, us in row["us_per_window"].items()  # type: ignore[attr-defined]
        }
    return {"window": window, "channels": channels, "members": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", default="1,2,3", help="comma-separated member counts, first is the base")
    parser.add_argument("--channels", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = measure([int(n) for n in args.members.split(",")], args.channels)
    path = write_result("ensemble_cost", report)
    print(f"wrote {path}")
    for members, row in report["members"].items():  # type: ignore[attr-defined]
        ratios = "  ".join(f"{k} x{v:.2f}" for k, v in row["ratio_to_first"].items())
        print(f"members {members}: {ratios}  int8 {row['bytes']['int8'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
