"""Can any false-alarm budget, fixed before the test half is seen, beat a baseline's own operating point?

Usage: python -m benchmarks.detection.budget_sweep [--groups realKnownCause] [--set k=v ... --variant NAME]
Reads a finished detection run's cache (same `--set`/`--variant` as that run). Per series it scores the
holdout and the training sample with the cached bundle's scorer graph, calibrates a threshold by the
bundle's own rule at each budget of a fixed ladder (training data only), and counts the test rows; the
counts are pooled per group. Each baseline keeps its own threshold from the run. Besides point-wise F1 and
false-alarm rate (FAR) it counts false-alarm episodes: maximal runs of flagged normal rows, what an
operator sees as separate false alerts. Writes benchmarks/results/budget_sweep[_NAME].json.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.detection import metrics, ours
from benchmarks.detection.datasets import DEFAULT_ROOT, LabelledSeries, load_all
from benchmarks.detection.report import beats
from benchmarks.detection.run import (
    OURS_FP32,
    OURS_INT8,
    baseline_folder,
    benchmark_config,
    calibrated_threshold,
    edgegan_folder,
    parse_settings,
    pooled_counts,
    prepare,
)
from benchmarks.environment import write_result
from trainer.calibrate import evenly_spaced
from trainer.config import TrainConfig

BUDGETS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
BASELINES = ("IsolationForest", "PCA Q", "PCA T2", "Conv autoencoder", "PyOD AnoGAN")
PRECISIONS = {OURS_FP32: "fp32", OURS_INT8: "int8"}


def false_alarm_episodes(flags: npt.NDArray[np.bool_], labels: npt.NDArray[np.integer]) -> int:
    """Maximal runs of flagged rows that hold no labelled row: the separate false alerts a person sees."""
    return len(metrics.segments(flags & (labels == 0)))


Tally = dict[str, object]  # {"counts": metrics.Counts as a dict, "episodes": int}


def _tally(flags: npt.NDArray[np.bool_], labels: npt.NDArray[np.int8]) -> Tally:
    return {"counts": asdict(metrics.count(flags, labels)), "episodes": false_alarm_episodes(flags, labels)}


def sweep_series(
    series: LabelledSeries, config: TrainConfig, cache: Path, quick: bool = False
) -> dict[str, dict[str, Tally]] | None:
    """Counts per detector and budget (ours) or at its own threshold (baselines); None if not in the cache."""
    folder = edgegan_folder(cache, series, config, quick)
    baseline_dir = baseline_folder(cache, series, config, quick)
    if not (folder / "result.json").is_file() or not baseline_dir.is_dir():
        return None
    prepared = prepare(series, config, cache / "budget_sweep_work" / series.name)
    train = evenly_spaced(prepared.sets.train) if config.score.uses_training_windows else None
    labels = series.test_labels
    traces = np.load(folder / "traces.npz")
    out: dict[str, dict[str, Tally]] = {}
    for name, precision in PRECISIONS.items():
        holdout = ours.score_graph(folder / "bundle", precision, prepared.sets.holdout).scores
        on_train = None if train is None else ours.score_graph(folder / "bundle", precision, train).scores
        out[name] = {}
        for budget in BUDGETS:
            budgeted = config.model_copy(
                update={"score": config.score.model_copy(update={"false_alarm_budget": budget})}
            )
            threshold = calibrated_threshold(holdout, budgeted, on_train)
            out[name][f"{budget:g}"] = _tally(traces[name] > threshold, labels)
    for name in BASELINES:
        stem = baseline_dir / name.replace(" ", "_")
        if stem.with_suffix(".json").is_file():
            threshold = json.loads(stem.with_suffix(".json").read_text())["threshold"]
            out[name] = {"own": _tally(np.load(stem.with_suffix(".npy")) > threshold, labels)}
    return out


def pooled(per_series: list[dict[str, dict[str, Tally]]]) -> dict[str, dict[str, dict[str, object]]]:
    """Per detector and point: the counts summed over series (`run.pooled_counts`), their ratios, and the
    false alarms and episodes."""
    out: dict[str, dict[str, dict[str, object]]] = {}
    for detector, points in per_series[0].items():
        for point in points:
            tallies = [series[detector][point] for series in per_series]
            total = pooled_counts(tallies)
            episodes = sum(int(t["episodes"]) for t in tallies)  # type: ignore[call-overload]
            row = {**total.summary(), "false_alarms": total.fp, "episodes": episodes}
            out.setdefault(detector, {})[point] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--groups", default="realKnownCause")
    parser.add_argument("--cache", type=Path, default=Path("runs/detection"))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--variant", default="")
    parser.add_argument("--quick", action="store_true", help="the cache of a --quick detection run")
    args = parser.parse_args()
    config = benchmark_config(args.quick, parse_settings(args.set))
    groups: dict[str, dict[str, dict[str, dict[str, Tally]]]] = {}
    for series in load_all(args.datasets, tuple(args.groups.split(","))):
        counts = sweep_series(series, config, args.cache, args.quick)
        if counts is not None:
            groups.setdefault(series.group, {})[series.name] = counts
    report: dict[str, object] = {"budgets": list(BUDGETS), "settings": args.set, "groups": {}}
    for group, by_series in groups.items():
        per_series = list(by_series.values())
        table = pooled(per_series)
        verdict = {
            f"{detector} @ {point}": [b for b in BASELINES if b in table and beats(row, table[b]["own"])]
            for detector in PRECISIONS
            for point, row in table[detector].items()
        }
        report["groups"][group] = {"pooled": table, "beats": verdict, "per_series": by_series}  # type: ignore[index]
        print(f"{group} ({len(per_series)} series)")
        for detector, points in table.items():
            for point, row in points.items():
                beaten = verdict.get(f"{detector} @ {point}", [])
                print(f"  {detector:18s} {point:>6s}  F1 {row['f1']:.3f}  FAR {row['false_alarm_rate']:.4f}  "
                      f"false alarms {row['false_alarms']:5.0f} in {row['episodes']:4.0f} episodes  "
                      f"beats: {', '.join(beaten) or '-'}")  # fmt: skip
    name = f"budget_sweep_{args.variant}" if args.variant else "budget_sweep"
    print(f"wrote {write_result(name, report)}")


if __name__ == "__main__":
    main()
