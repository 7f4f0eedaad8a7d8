"""Small fits on SMD: fit on a machine's first few hundred normal rows, score every later normal row.

Usage: python -m benchmarks.detection.small_data [--datasets DIR] [--rows 500] [--name NAME] [--labelled]

What a user with minutes of data meets, and what an industrial benchmark outside this repository measures:
each detector is fitted on the first `--rows` rows of an SMD training file (its first 80% trains, its last 20%
is the holdout that, with the training windows, sets the threshold by EdgeGAN's own rule), then scores every
later row of the same file (unlabelled, and taken as normal operation, as SMD describes them). Reported per
machine and detector: the share of those rows above the threshold (the false-alarm rate a deployment would
see), the same share over each fifth of the file (drift shows as a rising share), and the later rows' score
quantiles over the holdout's. No threshold is chosen from these rows, and the labelled test files are not
read.

`--labelled` measures detection the way that industrial benchmark does (a fit on a recording's first normal
rows, every later labelled row scored): each detector is fitted on the last `--rows` rows of the training
file, which SMD's test file directly continues, and scores the whole labelled test file. Reported: point-wise
F1, precision, recall and false-alarm rate (no point-adjust), and AUC-PR. The labels are read only to count.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.detection import metrics, ours
from benchmarks.detection.datasets import DEFAULT_ROOT, LabelledSeries, smd_series
from benchmarks.detection.run import benchmark_config, fit_and_calibrate, make_baselines, prepare
from benchmarks.detection.tep import later_over_holdout
from benchmarks.environment import write_result
from trainer.build import build_bundle

MACHINES = ("machine-1-6", "machine-2-1")
SLOW_BASELINES = ("PyOD AnoGAN",)  # minutes per fit, as on the full series; left out here


def _rates(flags: npt.NDArray[np.bool_]) -> dict[str, object]:
    return {
        "alarm_share": float(flags.mean()),
        "alarm_share_by_fifth": [round(float(part.mean()), 4) for part in np.array_split(flags, 5)],
    }


def evaluate(root: Path, machine: str, rows: int, work: Path) -> dict[str, object]:
    """Every detector fitted on the first `rows` rows of `machine`'s training file, scored on the rest."""
    full = smd_series(root, machine)
    later = full.train[rows:]
    series = LabelledSeries(
        name=machine,
        group="SMD",
        channels=full.channels,
        train=full.train[:rows],
        test=later,
        test_labels=np.zeros(len(later), np.int8),
        blanked_train_rows=0,
    )
    config = benchmark_config(False)
    prepared = prepare(series, config, work)
    windows = prepared.test_windows  # one per later row, the first reaching back into the fitted rows
    bundle = work / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    build_bundle(prepared.train_csv, bundle, config)
    holdout = ours.score_graph(bundle, "int8", prepared.sets.holdout).scores
    graph = ours.score_graph(bundle, "int8", windows)
    results: dict[str, object] = {
        "EdgeGAN ORT INT8": {
            **_rates(graph.scores > graph.threshold),
            **later_over_holdout(holdout, graph.scores),
        }
    }
    for detector in make_baselines(False, "SMD"):
        if detector.name in SLOW_BASELINES:
            continue
        _, holdout, calibration = fit_and_calibrate(detector, prepared, config)
        scores = detector.score(prepared.normalised(windows))
        results[detector.name] = {**_rates(scores > calibration.value), **later_over_holdout(holdout, scores)}
    return {"train_rows": rows, "later_rows": len(later), "detectors": results}


def _detection(
    scores: npt.NDArray[np.float64], threshold: float, labels: npt.NDArray[np.int8]
) -> dict[str, object]:
    summary = metrics.count(scores > threshold, labels).summary()
    return {
        **{key: summary[key] for key in ("f1", "precision", "recall", "false_alarm_rate", "event_recall")},
        "auc_pr": metrics.average_precision(scores, labels),
        "threshold": threshold,
    }


def evaluate_labelled(root: Path, machine: str, rows: int, work: Path) -> dict[str, object]:
    """Every detector fitted on the last `rows` rows of `machine`'s training file, scored on its labelled
    test file (which continues it in time)."""
    full = smd_series(root, machine)
    series = LabelledSeries(
        name=machine,
        group="SMD",
        channels=full.channels,
        train=full.train[-rows:],
        test=full.test,
        test_labels=full.test_labels,
        blanked_train_rows=0,
    )
    config = benchmark_config(False)
    prepared = prepare(series, config, work)
    labels = series.test_labels
    bundle = work / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    build_bundle(prepared.train_csv, bundle, config)
    graph = ours.score_graph(bundle, "int8", prepared.test_windows)
    results: dict[str, object] = {"EdgeGAN ORT INT8": _detection(graph.scores, graph.threshold, labels)}
    for detector in make_baselines(False, "SMD"):
        if detector.name in SLOW_BASELINES:
            continue
        _, _, calibration = fit_and_calibrate(detector, prepared, config)
        scores = detector.score(prepared.normalised(prepared.test_windows))
        results[detector.name] = _detection(scores, calibration.value, labels)
    return {
        "train_rows": rows,
        "test_rows": len(labels),
        "anomaly_share": float(labels.mean()),
        "detectors": results,
    }


def _print_labelled(machines: dict[str, dict[str, object]]) -> None:
    print("| machine | detector | F1 | precision | recall | FAR | AUC-PR |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for machine, result in machines.items():
        for name, figures in result["detectors"].items():  # type: ignore[attr-defined]
            auc = "-" if figures["auc_pr"] is None else f"{figures['auc_pr']:.3f}"
            print(
                f"| {machine} | {name} | {figures['f1']:.3f} | {figures['precision'] or 0:.3f} | "
                f"{figures['recall']:.3f} | {figures['false_alarm_rate']:.4f} | {auc} |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--rows", type=int, default=500, help="normal rows each detector is fitted on")
    parser.add_argument("--name", default="small_data", help="results file: benchmarks/results/NAME.json")
    parser.add_argument("--work", type=Path, default=Path("runs") / "detection" / "small_data")
    parser.add_argument(
        "--labelled",
        action="store_true",
        help="fit on the training file's last rows, score the labelled test file",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.labelled:
        labelled = {
            m: evaluate_labelled(args.datasets, m, args.rows, args.work / f"{m}-labelled") for m in MACHINES
        }
        write_result(args.name, {"protocol": "labelled", "machines": labelled})
        _print_labelled(labelled)
        return 0
    machines = {m: evaluate(args.datasets, m, args.rows, args.work / m) for m in MACHINES}
    write_result(args.name, {"machines": machines})
    print("| machine | detector | alarm share on later normal rows | by fifth | later / holdout q50, q99 |")
    print("| --- | --- | --- | --- | --- |")
    for machine, result in machines.items():
        for name, figures in result["detectors"].items():  # type: ignore[attr-defined]
            fifths = " ".join(f"{v:.3f}" for v in figures["alarm_share_by_fifth"])
            print(
                f"| {machine} | {name} | {figures['alarm_share']:.4f} | {fifths} | "
                f"{figures['q50']:.2f}, {figures['q99']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
