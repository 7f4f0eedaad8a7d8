"""Does synthetic data help a detector trained on a small slice of real data? Reported either way.

Usage: python -m benchmarks.augmentation [--datasets ../shared/datasets] [--fraction 0.1] [--seed N] [--quick]
For each series: take the first `fraction` of the normal training rows; fit bundle A on it; generate
synthetic rows from A's generator (`edge-trainer synth`'s code) to make up the rest of the full size; fit
bundle B on the slice plus the synthetic rows; fit bundle C on all the training rows (the reference). All
three score the same labelled test windows: AUC-PR (windows touching a labelled anomaly are positives) and
F1 at each bundle's own calibrated INT8 threshold. Writes benchmarks/results/augmentation.json.

Caveat, stated in the results too: B's thresholds are calibrated on a holdout that includes the synthetic
file's tail (each file is split in time), so its F1 mixes the detector's ranking with that calibration;
AUC-PR does not depend on the threshold.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.detection.datasets import DEFAULT_ROOT, LabelledSeries, nab_series, smd_series
from benchmarks.detection.metrics import average_precision, count
from benchmarks.environment import write_result
from edge_agent.backends import open_scorer
from edge_agent.bundle import SCORER_INT8, load_bundle
from edge_agent.tabular import read_table
from trainer.build import build_bundle
from trainer.config import TrainConfig
from trainer.synthetic.generate import synthesize, write_synthetic
from trainer.windows import slide


def _write_rows(path: Path, channels: list[str], rows: np.ndarray) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(channels)
        writer.writerows([f"{v:.6g}" for v in row] for row in rows)
    return path


def _evaluate_bundle(bundle_dir: Path, windows: np.ndarray, positives: np.ndarray) -> dict[str, float]:
    bundle = load_bundle(bundle_dir)
    scorer = open_scorer(bundle, precision="int8", threads=2)
    scores = np.concatenate([scorer.score(windows[i : i + 512]).scores for i in range(0, len(windows), 512)])
    threshold = bundle.threshold_for(SCORER_INT8).value
    return {
        "auc_pr": average_precision(scores, positives.astype(np.int8)),
        "f1_at_threshold": count(scores > threshold, positives.astype(np.int8)).summary()["f1"],
        "alarm_rate": float(np.mean(scores > threshold)),
    }


def run_series(
    series: LabelledSeries, config: TrainConfig, fraction: float, scratch: Path
) -> dict[str, object]:
    """Slice, synthetic-augmented slice and full data, scored side by side."""
    train_csv = series.write_train_csv(scratch / f"{series.name}_train.csv")
    table = read_table(train_csv)
    rows = table.values[~np.isnan(table.values).any(axis=1)]
    channels = table.channels
    small_rows = rows[: max(int(len(rows) * fraction), config.model.window_len * 6)]
    folder = scratch / series.name
    folder.mkdir()
    small = _write_rows(folder / "small.csv", channels, small_rows)
    bundle_a = build_bundle(small, folder / "bundle_small", config).bundle.path
    _, timestamps, synthetic = synthesize(
        bundle_a, len(rows) - len(small_rows), seed=config.fit.seed, start_ts=0.0
    )
    augmented = folder / "augmented"
    augmented.mkdir()
    _write_rows(augmented / "a_real.csv", channels, small_rows)
    write_synthetic(augmented / "b_synthetic.csv", channels, timestamps, synthetic)
    bundle_b = build_bundle(augmented, folder / "bundle_augmented", config).bundle.path
    bundle_c = build_bundle(train_csv, folder / "bundle_full", config).bundle.path
    window = config.model.window_len
    windows = slide(series.test, window, 1)
    positives = slide(series.test_labels[:, None].astype(float), window, 1).max(axis=(1, 2)) > 0
    return {
        "rows_small": len(small_rows),
        "rows_synthetic": len(synthetic),
        "rows_full": len(rows),
        "test_windows": len(windows),
        "positive_share": float(positives.mean()),
        "small": _evaluate_bundle(bundle_a, windows, positives),
        "small_plus_synthetic": _evaluate_bundle(bundle_b, windows, positives),
        "full": _evaluate_bundle(bundle_c, windows, positives),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one NAB series, 12 epochs (a smoke run of the harness; writes results/augmentation_quick.json)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="fit.seed of all three fits; writes results/augmentation_seedN.json",
    )
    args = parser.parse_args()
    config = TrainConfig.model_validate({"fit": {"seed": args.seed}} if args.seed else {})
    if args.quick:
        # 12 epochs: at 5 the generator collapsed in every epoch and the fit refused to write a bundle.
        config = TrainConfig.model_validate({"fit": {"epochs": 12, "encoder_epochs": 4, "seed": args.seed}})
    report: dict[str, object] = {
        "fraction": args.fraction,
        "seed": args.seed,
        "caveat": "the augmented bundle's thresholds are calibrated partly on synthetic holdout; "
        "AUC-PR is threshold-free",
    }
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        # nyc_taxi trains up to its first labelled row, as in the study's first run
        series = [nab_series(args.datasets, "realKnownCause/nyc_taxi.csv", before_first_anomaly=True)]
        if not args.quick:
            series.append(smd_series(args.datasets, "machine-2-1"))
        for item in series:
            report[item.name] = run_series(item, config, args.fraction, scratch)
            print(item.name, json.dumps(report[item.name]), flush=True)
    # A smoke run never overwrites the study's figures.
    name = "augmentation_quick" if args.quick else "augmentation"
    print(f"wrote {write_result(name if args.seed == 0 else f'{name}_seed{args.seed}', report)}")


if __name__ == "__main__":
    main()
