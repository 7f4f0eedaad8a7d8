"""Synthetic data quality and privacy over several seeds, beside what a perfect generator scores.

Usage: python -m benchmarks.synth_quality [--bundle runs/demo/bundle] [--data runs/demo/pump_normal.csv]
       [--seeds 3] [--rows 6000] [--truncation 0.7] [--pump-reference] [--reference CSV]
       [--stretch-reference]
Each seed draws `rows` rows with `edge-trainer synth`'s code and scores them with its report (figures against
the training rows and the held-out tail). With `--pump-reference` (the demo's data), fresh rows of the very
process the data came from (`make_pump_series`, other seeds) are scored the same way: a perfect generator,
so the figures' floor on a series this short. `--reference` does the same with real rows of the process that
the fit never saw (TEP's normal test run `d00_te`; a later stretch of the same machine): at most `rows` of
them, from a start that differs by seed where the file holds more. `--stretch-reference` takes the process
itself as the generator: a stretch of `rows` training rows (from a start that differs by seed), scored against
the training part without it. Where levels change over thousands of rows (SMD), a stretch visits only some of
them, and this column is the floor any generator's figures have at that length.
Writes benchmarks/results/synth_quality.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.environment import write_result
from edge_agent.bundle import BundleManifest, load_bundle
from edge_agent.simulator.stream import TRUNCATION
from trainer.config import TrainConfig
from trainer.demo.pump_data import make_pump_series
from trainer.synthetic.generate import synthesize
from trainer.synthetic.report import build_report, real_segments, split_like_the_fit

FIGURES = {
    "discriminative (training)": ("quality", "discriminative_score"),
    "KS mean (training)": ("quality", "ks_mean"),
    "spectrum (training)": ("quality", "spectrum_mean_abs_log10_difference"),
    "correlation (training)": ("quality", "correlation_mean_abs_difference"),
    "discriminative null spread (training)": ("quality", "discriminative_null_spread"),
    "discriminative (held-out)": ("holdout", "discriminative_score"),
    "next-step MAE, synthetic-trained": ("quality", "predictive_mae_train_synthetic_test_real"),
    "next-step MAE, real-trained": ("quality", "predictive_mae_train_real_test_real"),
    "closer-to-training share": ("privacy", "closer_to_training_share"),
    "near-copy rate": ("privacy", "near_copy_rate"),
    "held-out near-copy rate": ("privacy", "holdout_near_copy_rate"),
    "membership inference AUC": ("privacy", "membership_inference_auc"),
}


def _figures(
    rows: np.ndarray, train: np.ndarray, holdout: np.ndarray, manifest: BundleManifest, seed: int
) -> dict:
    norm = manifest.normalisation
    report = build_report(
        rows.astype(np.float32),
        train,
        holdout,
        manifest.window_len,
        np.asarray(norm.mean, dtype=np.float32),
        np.asarray(norm.scale, dtype=np.float32),
        seed=seed,
    )
    parts = {
        "quality": report.quality,
        "holdout": report.quality["against_holdout"],
        "privacy": report.privacy,
    }
    # None: too few held-out rows for the classifier (TEP's 100); the table says so
    return {name: _figure(parts[part][key]) for name, (part, key) in FIGURES.items()}


def _start(total: int, count: int, seed: int) -> int:
    """Where `count` consecutive rows of `total` begin: drawn by `seed` where there are more."""
    spare = total - count
    return int(np.random.default_rng(seed).integers(0, spare + 1)) if spare > 0 else 0


def _slice(rows: np.ndarray, count: int, seed: int) -> np.ndarray:
    """At most `count` consecutive rows, from a start drawn by `seed` where there are more."""
    start = _start(len(rows), count, seed)
    return rows[start : start + count]


def training_stretch(train: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(`count` consecutive training rows from a start drawn by `seed`, the training rows without them); at
    most half the training part, so the rest still holds as many. The rest is joined where the stretch was:
    the few windows across that join are the only ones no real device made."""
    count = min(count, len(train) // 2)
    start = _start(len(train), count, seed)
    return train[start : start + count], np.concatenate([train[:start], train[start + count :]])


def _figure(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _cell(values: list[float | None]) -> str:
    """Mean (range) over seeds, or why there is none."""
    known = [v for v in values if v is not None]
    if not known:
        return "too few rows"
    return f"{np.mean(known):.3f} ({min(known):.3f}-{max(known):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("runs/demo/bundle"))
    parser.add_argument("--data", type=Path, default=Path("runs/demo/pump_normal.csv"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument(
        "--truncation", type=float, default=TRUNCATION, help="latent sd, as `edge-trainer synth --truncation`"
    )
    parser.add_argument(
        "--pump-reference", action="store_true", help="add fresh pump rows (a perfect generator)"
    )
    parser.add_argument("--reference", type=Path, help="add unseen real rows of the same process (a CSV)")
    parser.add_argument(
        "--stretch-reference",
        action="store_true",
        help="add stretches of the training rows, each scored against the rest (the process as generator)",
    )
    args = parser.parse_args()
    manifest = load_bundle(args.bundle).manifest
    train, holdout = split_like_the_fit(args.data, list(manifest.channels), TrainConfig())
    # Each source draws (rows, the training rows they are compared with) per seed.
    sources = {
        "generator": lambda seed: (synthesize(args.bundle, args.rows, seed, args.truncation)[2], train)
    }
    if args.pump_reference:
        sources["fresh pump rows (perfect generator)"] = lambda seed: (
            make_pump_series(args.rows, seed=100 + seed),
            train,
        )
    if args.reference is not None:
        unseen = np.concatenate(real_segments(args.reference, list(manifest.channels), TrainConfig()))
        sources[f"unseen real rows ({args.reference.name})"] = lambda seed: (
            _slice(unseen, args.rows, seed),
            train,
        )
    if args.stretch_reference:
        sources["training stretch against the rest"] = lambda seed: training_stretch(train, args.rows, seed)
    results: dict[str, dict[str, list[float | None]]] = {}
    for source, draw in sources.items():
        per_seed = [_figures(*draw(seed), holdout, manifest, seed) for seed in range(1, args.seeds + 1)]
        results[source] = {name: [figures[name] for figures in per_seed] for name in FIGURES}
    print(f"| figure | {' | '.join(results)} |")
    print(f"| --- |{' --- |' * len(results)}")
    for name in FIGURES:
        cells = [_cell(v[name]) for v in results.values()]
        print(f"| {name} | {' | '.join(cells)} |")
    path = write_result(
        "synth_quality",
        {
            "bundle": str(args.bundle),
            "data": str(args.data),
            "reference": None if args.reference is None else str(args.reference),
            "rows": args.rows,
            "truncation": args.truncation,
            "seeds": args.seeds,
            **results,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
