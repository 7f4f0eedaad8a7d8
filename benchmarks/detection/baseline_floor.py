"""Would the baselines gain from EdgeGAN's spread floor too? The same windows, normalised with and without it.

Usage: python -m benchmarks.detection.baseline_floor [--floor 1.0] [--groups SMD]
EdgeGAN floors each channel's normalising spread at a share of the median channel's (`data.spread_floor`);
the benchmark gives the baselines a plain z-score. This refits the fast baselines (IsolationForest, PCA Q
and T-squared) both ways, with the benchmark's own thresholds (POT on the holdout), so the report can say
whether the floor is a model improvement or a preprocessing trick any detector would profit from.
Writes benchmarks/results/baseline_floor.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.detection import baselines, metrics
from benchmarks.detection.datasets import DEFAULT_ROOT, load_all
from benchmarks.detection.run import benchmark_config, prepare, run_baseline
from benchmarks.environment import write_result


def _fast_baselines() -> list[baselines.Detector]:
    return [baselines.IsolationForestDetector(), baselines.PcaDetector("Q"), baselines.PcaDetector("T2")]


def evaluate(root: Path, groups: tuple[str, ...], floor: float) -> dict[str, dict[str, object]]:
    """Per detector and floor: pooled point-wise F1 and FAR, and mean AUC-PR over the groups' series."""
    config = benchmark_config(quick=False)
    pooled: dict[str, dict[str, object]] = {}
    for spread_floor in (0.0, floor):
        totals: dict[str, metrics.Counts] = {}
        aucs: dict[str, list[float]] = {}
        for series in load_all(root, groups):
            with tempfile.TemporaryDirectory() as scratch:
                prepared = prepare(series, config, Path(scratch), spread_floor)
            for detector in _fast_baselines():
                entry, _ = run_baseline(detector, prepared, config)
                counts = metrics.Counts(**entry["counts"])  # type: ignore[arg-type]
                totals[detector.name] = totals[detector.name] + counts if detector.name in totals else counts
                if entry["auc_pr"] is not None:
                    aucs.setdefault(detector.name, []).append(float(entry["auc_pr"]))  # type: ignore[arg-type]
        for name, total in totals.items():
            summary = total.summary()
            row = {"f1": summary["f1"], "false_alarm_rate": summary["false_alarm_rate"]}
            row["auc_pr_mean"] = sum(aucs[name]) / len(aucs[name]) if aucs.get(name) else None
            pooled.setdefault(name, {})[f"floor={spread_floor:g}"] = row
            print(f"{name:18s} floor={spread_floor:<4g} F1 {row['f1']:.3f} FAR {row['false_alarm_rate']:.4f} "
                  f"AUC-PR {row['auc_pr_mean'] or 0:.3f}", flush=True)  # fmt: skip
    return pooled


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--groups", default="SMD")
    parser.add_argument("--floor", type=float, default=1.0, help="data.spread_floor to compare with 0")
    args = parser.parse_args()
    report = evaluate(args.datasets, tuple(args.groups.split(",")), args.floor)
    print(f"wrote {write_result('baseline_floor', {'groups': args.groups, 'detectors': report})}")


if __name__ == "__main__":
    main()
