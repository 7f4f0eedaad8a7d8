"""Side by side in one run: every detector's fit time and per-window scoring cost at batch 1, 64 and 512.

Usage: python -m benchmarks.detection.speed [--series nyc_taxi] [--datasets DIR]
One series, its training windows, default budgets for every detector, one CPU thread for scoring.
EdgeGAN is timed as torch eager (the same architecture), ONNX Runtime FP32 and INT8. Writes
benchmarks/results/detection_speed.json; REPORT.md quotes it as ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.detection.datasets import DEFAULT_ROOT, load_all
from benchmarks.detection.run import benchmark_config, make_baselines, prepare
from benchmarks.environment import write_result
from benchmarks.scorer_speed import time_per_window, torch_scorer
from edge_agent.backends import open_scorer
from edge_agent.bundle import load_bundle
from edge_agent.vocabulary import Precision
from trainer.build import build_bundle

BATCHES = (1, 64, 512)


def measure(series_name: str, root: Path) -> dict[str, object]:
    config = benchmark_config(False)
    series = next(
        s for s in load_all(root, ("realKnownCause", "realAWSCloudwatch", "SMD")) if s.name == series_name
    )
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        prepared = prepare(series, config, scratch)
        test = prepared.test_windows
        started = time.perf_counter()
        build_bundle(prepared.train_csv, scratch / "bundle", config)
        ours_fit = time.perf_counter() - started
        bundle = load_bundle(scratch / "bundle")
        torch.set_num_threads(1)
        eager = torch_scorer(bundle.manifest.latent_dim, test.shape[2], test.shape[1], config.model.width)
        timed: dict[str, object] = {}
        for precision in (Precision.FP32, Precision.INT8):
            scorer = open_scorer(bundle, precision=precision, threads=1)
            scorer.warmup()
            timed[f"EdgeGAN ORT {precision.upper()}"] = lambda w, s=scorer: s.score(w)

        def run_eager(windows: np.ndarray) -> None:
            with torch.inference_mode():
                eager(torch.from_numpy(windows))

        timed["EdgeGAN torch eager"] = run_eager
        fits = {name: ours_fit for name in timed}
        for detector in make_baselines(False, "SMD"):  # every baseline, PyOD AnoGAN included
            torch.set_num_threads(2)
            started = time.perf_counter()
            detector.fit(prepared.normalised(prepared.sets.train))
            fits[detector.name] = time.perf_counter() - started
            torch.set_num_threads(1)
            timed[detector.name] = lambda w, d=detector: d.score(prepared.normalised(w))
        for name, score in timed.items():
            out[name] = {"fit_s": round(fits[name], 1)}
            for batch in BATCHES:
                cost = time_per_window(score, test[:batch], repeats=3, target_windows=3 * 4096)
                out[name][f"us_per_window_batch_{batch}"] = round(cost, 1)
    return {"series": series_name, "train_windows": len(prepared.sets.train), "detectors": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", default="nyc_taxi")
    parser.add_argument("--datasets", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args()
    report = measure(args.series, args.datasets)
    print(f"wrote {write_result('detection_speed', report)}")
    for name, row in report["detectors"].items():  # type: ignore[attr-defined]
        print(f"{name:22s}", row)


if __name__ == "__main__":
    main()
