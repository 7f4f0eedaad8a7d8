"""Per-window scoring cost: torch eager vs ONNX Runtime FP32 vs INT8, batch 1/64/512, one CPU thread.

Usage: python -m benchmarks.scorer_speed [--bundle DIR] [--against DIR]
(without --bundle a default-sized bundle is fitted; --against times a second bundle's graphs beside it)
Reports microseconds per window and ratios measured side by side in this one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.environment import write_result
from edge_agent.backends import open_scorer
from edge_agent.bundle import load_bundle
from edge_agent.vocabulary import Precision

BATCHES = (1, 64, 512)
TARGET_WINDOWS = 20_000  # per measurement, so batch 1 and batch 512 get comparable wall time


def time_per_window(
    score: Callable[[Any], object],
    windows: Any,
    repeats: int = 5,
    target_windows: int = TARGET_WINDOWS,
    sync: Callable[[], object] | None = None,
) -> float:
    """Median microseconds per window of `score(windows)`; `sync` waits for queued GPU work."""
    calls = max(3, target_windows // len(windows) // repeats)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            score(windows)
        if sync is not None:
            sync()
        samples.append((time.perf_counter() - start) / (calls * len(windows)))
    return statistics.median(samples) * 1e6


def torch_scorer(latent: int, channels: int, window: int, width: int | None = None) -> Any:
    """The scorer graph as a torch module; weights do not change the cost, so fresh ones serve."""
    import torch

    from trainer.auto_score import score_weights
    from trainer.config import TrainConfig
    from trainer.networks import Critic, Encoder, Generator
    from trainer.scorer_graph import LatentDistance, ScorerModule, ScoreTerms, TermScales

    width = width or TrainConfig().model.width
    terms = ScoreTerms(
        Encoder(latent, channels, window, width),
        Generator(latent, channels, window, width),
        Critic(channels, window, width),
    )
    config = TrainConfig()
    distance = LatentDistance(torch.zeros(latent), torch.eye(latent))
    return ScorerModule(
        terms,
        torch.zeros(channels),
        torch.ones(channels),
        TermScales.unit(channels, window),
        score_weights(config),
        distance,
    ).eval()


def _torch_eager(window: int, channels: int, latent: int, width: int) -> object:
    """Torch eager cost of the same architecture, one CPU thread."""
    import torch

    torch.set_num_threads(1)
    module = torch_scorer(latent, channels, window, width)

    def run(windows: np.ndarray) -> None:
        with torch.inference_mode():
            module(torch.from_numpy(windows))  # type: ignore[operator]

    return run


def measure(bundle_dir: Path, width: int) -> dict[str, object]:
    bundle = load_bundle(bundle_dir)
    window, channels = bundle.manifest.window_len, len(bundle.manifest.channels)
    rng = np.random.default_rng(0)
    mean = np.asarray(bundle.manifest.normalisation.mean, dtype=np.float32)
    scale = np.asarray(bundle.manifest.normalisation.scale, dtype=np.float32)
    results: dict[str, dict[str, float]] = {}
    for precision in (Precision.FP32, Precision.INT8):
        scorer = open_scorer(bundle, precision=precision, threads=1)
        scorer.warmup()
        results[precision] = {}
        for batch in BATCHES:
            windows = rng.normal(size=(batch, window, channels)).astype(np.float32) * scale + mean
            results[precision][str(batch)] = time_per_window(lambda w, s=scorer: s.score(w), windows)
    eager = _torch_eager(window, channels, bundle.manifest.latent_dim, width)
    results["torch_eager"] = {}
    for batch in BATCHES:
        windows = rng.normal(size=(batch, window, channels)).astype(np.float32)
        results["torch_eager"][str(batch)] = time_per_window(eager, windows)  # type: ignore[arg-type]
    ratios = {str(b): results["fp32"][str(b)] / results["int8"][str(b)] for b in BATCHES}
    return {
        "us_per_window": results,
        "int8_speedup_over_fp32": ratios,
        "window": window,
        "channels": channels,
    }


AGAINST_BATCHES = (1, 128)  # one reading at a time, and the agent's score chunk under a backlog
AGAINST_ROUNDS = 3


def measure_against(bundle_dir: Path, other_dir: Path) -> dict[str, object]:
    """Both bundles' ORT graphs timed in alternating rounds: how a change to the exported graphs pays.

    Why alternating rounds: this machine's speed drifts by tens of percent between minutes, so only figures
    taken side by side compare. The windows are the first bundle's shape; both must share it.
    """
    bundles = {"bundle": load_bundle(bundle_dir), "against": load_bundle(other_dir)}
    shapes = {(b.manifest.window_len, len(b.manifest.channels)) for b in bundles.values()}
    if len(shapes) != 1:
        raise SystemExit(f"--against needs bundles of one window shape; got {sorted(shapes)}")
    (window, channels) = shapes.pop()
    rng = np.random.default_rng(1)
    out: dict[str, object] = {"bundle": str(bundle_dir), "against": str(other_dir), "rounds": AGAINST_ROUNDS}
    for precision in (Precision.FP32, Precision.INT8):
        scorers = {name: open_scorer(b, precision=precision, threads=1) for name, b in bundles.items()}
        for batch in AGAINST_BATCHES:
            windows = rng.normal(size=(batch, window, channels)).astype(np.float32)
            samples: dict[str, list[float]] = {name: [] for name in scorers}
            for _ in range(AGAINST_ROUNDS):
                for name, scorer in scorers.items():
                    samples[name].append(time_per_window(lambda w, s=scorer: s.score(w), windows, repeats=3))
            ratio = statistics.median(samples["against"]) / statistics.median(samples["bundle"])
            out[f"{precision}_batch{batch}"] = {"us_per_window": samples, "speedup_over_against": ratio}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, help="bundle to time; default: fit one on 10,000 demo rows")
    parser.add_argument(
        "--against", type=Path, help="a second bundle (an older export of the same fit) timed beside --bundle"
    )
    args = parser.parse_args()
    from trainer.config import TrainConfig

    width = TrainConfig().model.width
    if args.bundle:
        report = measure(args.bundle, width)
    else:
        from trainer.build import build_bundle
        from trainer.demo.pump_data import write_pump_csv

        with tempfile.TemporaryDirectory() as scratch:
            data = write_pump_csv(Path(scratch) / "pump.csv", rows=10_000, seed=1)
            build_bundle(data, Path(scratch) / "bundle", TrainConfig())
            report = measure(Path(scratch) / "bundle", width)
    if args.against:
        if not args.bundle:
            raise SystemExit("--against needs --bundle")
        report["against"] = measure_against(args.bundle, args.against)
    path = write_result("scorer_speed", report)
    print(f"wrote {path}")
    for name, per_batch in report["us_per_window"].items():  # type: ignore[union-attr]
        print(f"{name:12s}", "  ".join(f"batch {b}: {us:8.1f} us" for b, us in per_batch.items()))
    against = report.get("against")
    if isinstance(against, dict):
        for key, row in against.items():
            if isinstance(row, dict):
                spans = {n: f"{min(v):.1f}-{max(v):.1f}" for n, v in row["us_per_window"].items()}
                print(
                    f"{key:16s} bundle {spans['bundle']} us, against {spans['against']} us: "
                    f"{row['speedup_over_against']:.2f}x"
                )


if __name__ == "__main__":
    main()
