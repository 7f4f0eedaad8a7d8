"""Does the calibrated threshold keep its false-alarm budget on real data? POT against a plain quantile.

Usage: python -m benchmarks.calibration_check [--datasets ../shared/datasets] [--quick]
For each series: fit a bundle on the normal/training part with default settings, take the held-out normal
scores the fit calibrates on, derive thresholds with both methods for several budgets, and measure the
false-alarm rate they give on the *normal* windows of the later, unseen test part (windows that touch no
labelled anomaly). Writes benchmarks/results/calibration_check.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from benchmarks.environment import write_result
from edge_agent.backends import open_scorer
from edge_agent.tabular import read_table
from trainer.build import build_bundle
from trainer.calibrate import pot_threshold, quantile_threshold
from trainer.config import TrainConfig
from trainer.csv_data import load_training_data
from trainer.windows import build_windows, slide

BUDGETS = (1e-2, 1e-3)
NAB_SERIES = (
    "realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv",
    "realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv",
    "realKnownCause/nyc_taxi.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_c6585a.csv",
)
SMD_MACHINES = ("machine-1-6", "machine-2-1")
DEFAULT_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@dataclass(frozen=True)
class Series:
    """A training CSV plus a labelled test part that follows it in time."""

    name: str
    train_csv: Path
    test_values: np.ndarray  # [rows, channels]
    test_labels: np.ndarray  # [rows] 0/1


def _nab_series(root: Path, relative: str, scratch: Path) -> Series:
    path = root / "nab" / "data" / relative
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    windows = json.loads((root / "nab" / "labels" / "combined_windows.json").read_text())[relative]
    stamps = [datetime.fromisoformat(r[0]) for r in rows]
    labels = np.zeros(len(rows), dtype=int)
    for start, end in windows:
        lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
        labels[[i for i, t in enumerate(stamps) if lo <= t <= hi]] = 1
    first_anomaly = int(np.argmax(labels)) if labels.any() else len(rows)
    cut = min(len(rows) // 2, first_anomaly)
    train_csv = scratch / f"{Path(relative).stem}_train.csv"
    with train_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value"])
        writer.writerows(rows[:cut])
    values = np.array([[float(r[1])] for r in rows])
    return Series(Path(relative).stem, train_csv, values[cut:], labels[cut:])


def _smd_series(root: Path, machine: str) -> Series:
    test = read_table(root / "smd" / "test" / f"{machine}.txt")
    labels = np.loadtxt(root / "smd" / "test_label" / f"{machine}.txt", dtype=int)
    return Series(machine, root / "smd" / "train" / f"{machine}.txt", test.values, labels)


def _scores(bundle_dir: Path, windows: np.ndarray) -> np.ndarray:
    from edge_agent.bundle import load_bundle

    scorer = open_scorer(load_bundle(bundle_dir), precision="int8", threads=2)
    return np.concatenate([scorer.score(windows[i : i + 512]).scores for i in range(0, len(windows), 512)])


def evaluate(series: Series, config: TrainConfig, scratch: Path) -> dict[str, object]:
    """Fit, then compare realised false-alarm rates of both methods on unseen normal windows."""
    bundle_dir = scratch / f"bundle_{series.name}"
    result = build_bundle(series.train_csv, bundle_dir, config)
    data = load_training_data(series.train_csv, config.data)
    window_len = config.model.window_len
    holdout = build_windows(data.segments, window_len, 1, config.data.holdout_fraction).holdout
    holdout_scores = _scores(bundle_dir, holdout)
    test_windows = slide(series.test_values, window_len, 1)
    touched = slide(series.test_labels[:, None].astype(float), window_len, 1).max(axis=(1, 2)) > 0
    normal_scores = _scores(bundle_dir, test_windows[~touched])
    out: dict[str, object] = {
        "train_rows": int(result.bundle.manifest.provenance.rows_train),
        "holdout_windows": len(holdout_scores),
        "test_normal_windows": int((~touched).sum()),
        "fit_seconds": round(result.fit_seconds, 1),
    }
    for budget in BUDGETS:
        pot = pot_threshold(holdout_scores, budget, config.score.pot_initial_quantile)
        quantile = quantile_threshold(holdout_scores, budget)
        out[f"budget_{budget:g}"] = {
            "pot_method": pot.method,
            "pot_threshold": pot.value,
            "quantile_threshold": quantile.value,
            "pot_realised_far": float(np.mean(normal_scores > pot.value)),
            "quantile_realised_far": float(np.mean(normal_scores > quantile.value)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--quick", action="store_true", help="NAB only, fewer epochs (harness smoke run)")
    args = parser.parse_args()
    config = TrainConfig()
    if args.quick:
        config = TrainConfig.model_validate({"fit": {"epochs": 5, "encoder_epochs": 3}})
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        series = [_nab_series(args.datasets, name, scratch) for name in NAB_SERIES]
        if not args.quick:
            series += [_smd_series(args.datasets, machine) for machine in SMD_MACHINES]
        for item in series:
            report[item.name] = evaluate(item, config, scratch)
            print(item.name, json.dumps(report[item.name]))
    print(f"wrote {write_result('calibration_check', report)}")


if __name__ == "__main__":
    main()
