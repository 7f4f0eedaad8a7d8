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

Both protocols also report each detector's alarms under the agent's own alert rule (`alert_rule`), same
thresholds: what a deployment of that detector behind the agent would raise.

`--pump` runs the unlabelled protocol on generated data instead of SMD: one recording of the demo's pump
(`trainer.demo.pump_data`) at a single duty point, `PUMP_RECORDING_ROWS` rows at 1 Hz like one test-bench
experiment, fitted on its first `--rows` rows. Its levels move only with the slow inlet-temperature cycle
(rising about 3 of its training standard deviations after the fitted rows), the drift that makes later
normal rows of an industrial recording alarm. `--pump --labelled` adds one labelled fault to each recording
(`PUMP_FAULTS`: a throttled valve, cavitation, a wearing bearing, rows 650-949, each reaching its full size in
20 s) and measures detection as `--labelled` does, per recording and pooled: the industrial benchmark's F1
and false-alarm rate, with normal rows before and after the fault.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.detection import metrics, ours
from benchmarks.detection.alert_rule import alert_states, counted_under_rule
from benchmarks.detection.datasets import DEFAULT_ROOT, LabelledSeries, smd_series
from benchmarks.detection.run import (
    benchmark_config,
    fit_and_calibrate,
    make_baselines,
    parse_settings,
    pooled_counts,
    prepare,
)
from benchmarks.detection.tep import later_over_holdout
from benchmarks.environment import write_result
from trainer.build import build_bundle
from trainer.config import TrainConfig
from trainer.demo.pump_data import PUMP_CHANNELS, make_pump_series

MACHINES = ("machine-1-6", "machine-2-1")
PUMP_RECORDING_ROWS = 1150  # one test-bench experiment: about 19 minutes at 1 Hz
PUMP_DUTY_RPM = (1450.0,)  # one operating point for the whole recording
PUMP_SEEDS = (11, 12)
# (fault, recording seed): one collective fault per recording, in the later rows, as a test-bench experiment
PUMP_FAULTS = (("valve", 11), ("cavitation", 12), ("bearing", 13))
PUMP_FAULT_ROWS = (650, 950)
FAULT_ONSET_ROWS = 20.0  # a valve or a failing part takes this long to reach the fault's full size
SLOW_BASELINES = ("PyOD AnoGAN",)  # minutes per fit, as on the full series; left out here


def _rates(flags: npt.NDArray[np.bool_]) -> dict[str, object]:
    return {
        "alarm_share": float(flags.mean()),
        "alarm_share_by_fifth": [round(float(part.mean()), 4) for part in np.array_split(flags, 5)],
    }


Judge = Callable[[npt.NDArray[np.float64], npt.NDArray[np.float64], float], dict[str, object]]


def _every_detector(
    series: LabelledSeries, work: Path, judge: Judge, config: TrainConfig
) -> dict[str, object]:
    """EdgeGAN INT8 (the default fit) and every quick baseline, fitted on `series.train` and scored on one
    window per test row (the first reaching back into the fitted rows), each at its threshold by EdgeGAN's
    rule; `judge(holdout scores, test scores, threshold)` makes each detector's figures. `config`: the
    benchmark's (`--set` changes it, as for `detection.tep`)."""
    prepared = prepare(series, config, work)
    windows = prepared.test_windows
    bundle = work / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    build_bundle(prepared.train_csv, bundle, config)
    holdout = ours.score_graph(bundle, "int8", prepared.sets.holdout).scores
    graph = ours.score_graph(bundle, "int8", windows)
    results: dict[str, object] = {"EdgeGAN ORT INT8": judge(holdout, graph.scores, graph.threshold)}
    for detector in make_baselines(False, "SMD"):
        if detector.name in SLOW_BASELINES:
            continue
        _, holdout, calibration = fit_and_calibrate(detector, prepared, config)
        results[detector.name] = judge(
            holdout, detector.score(prepared.normalised(windows)), calibration.value
        )
    return results


def _part(
    full: LabelledSeries,
    train: npt.NDArray[np.float64],
    test: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int8],
) -> LabelledSeries:
    """An SMD machine's rows cut into a small fit's training rows and the rows it scores."""
    return LabelledSeries(
        name=full.name,
        group="SMD",
        channels=full.channels,
        train=train,
        test=test,
        test_labels=labels,
        blanked_train_rows=0,
    )


def _alarm_shares(
    holdout: npt.NDArray[np.float64], scores: npt.NDArray[np.float64], threshold: float
) -> dict[str, object]:
    under_rule = float(alert_states(scores, threshold).mean())
    return {
        **_rates(scores > threshold),
        "alarm_share_alert_rule": under_rule,
        **later_over_holdout(holdout, scores),
    }


def evaluate(root: Path, machine: str, rows: int, work: Path, config: TrainConfig) -> dict[str, object]:
    """Every detector fitted on the first `rows` rows of `machine`'s training file, scored on the rest."""
    full = smd_series(root, machine)
    later = full.train[rows:]
    series = _part(full, full.train[:rows], later, np.zeros(len(later), np.int8))
    return {
        "train_rows": rows,
        "later_rows": len(later),
        "detectors": _every_detector(series, work, _alarm_shares, config),
    }


def evaluate_pump(seed: int, rows: int, work: Path, config: TrainConfig) -> dict[str, object]:
    """Every detector fitted on the first `rows` rows of one generated pump recording, scored on the rest."""
    values = make_pump_series(PUMP_RECORDING_ROWS, seed=seed, duty_levels=PUMP_DUTY_RPM)
    later = values[rows:]
    series = LabelledSeries(
        name=f"pump-{seed}",
        group="pump",
        channels=list(PUMP_CHANNELS),
        train=values[:rows],
        test=later,
        test_labels=np.zeros(len(later), np.int8),
        blanked_train_rows=0,
    )
    return {
        "train_rows": rows,
        "later_rows": len(later),
        "detectors": _every_detector(series, work, _alarm_shares, config),
    }


def detection_judge(labels: npt.NDArray[np.int8]) -> Judge:
    """Detection figures against `labels` (no point-adjust), point-wise and under the agent's rule, with the
    confusion counts so that recordings can be pooled."""

    def judge(
        _holdout: npt.NDArray[np.float64], scores: npt.NDArray[np.float64], threshold: float
    ) -> dict[str, object]:
        counts = metrics.count(scores > threshold, labels)
        summary = counts.summary()
        under_rule = counted_under_rule(scores, threshold, labels)
        by_rule = under_rule.summary()
        return {
            **{
                key: summary[key] for key in ("f1", "precision", "recall", "false_alarm_rate", "event_recall")
            },
            "alert_rule": {key: by_rule[key] for key in ("f1", "precision", "recall", "false_alarm_rate")},
            "auc_pr": metrics.average_precision(scores, labels),
            "threshold": threshold,
            "counts": dataclasses.asdict(counts),
            "counts_alert_rule": dataclasses.asdict(under_rule),
        }

    return judge


def evaluate_labelled(
    root: Path, machine: str, rows: int, work: Path, config: TrainConfig
) -> dict[str, object]:
    """Every detector fitted on the last `rows` rows of `machine`'s training file, scored on its labelled
    test file (which continues it in time)."""
    full = smd_series(root, machine)
    labels = full.test_labels
    series = _part(full, full.train[-rows:], full.test, labels)
    return {
        "train_rows": rows,
        "test_rows": len(labels),
        "anomaly_share": float(labels.mean()),
        "detectors": _every_detector(series, work, detection_judge(labels), config),
    }


def with_pump_fault(
    values: npt.NDArray[np.float64], fault: str, start: int, end: int
) -> npt.NDArray[np.float64]:
    """A copy of a pump recording with one collective fault in rows [start, end), in raw units.

    valve: a throttled discharge valve (flow down 12%, head up 8%, motor load down 4%); cavitation: vibration
    up with noise, flow unsteady, head down 3%; bearing: the bearing warms 4 degC over the fault while
    vibration creeps up. Each reaches its size over FAULT_ONSET_ROWS (the bearing over the whole fault)."""
    _speed, flow, pressure, current, vibration, bearing, _inlet, power = range(len(PUMP_CHANNELS))
    out: npt.NDArray[np.float64] = np.array(values, dtype=np.float64)
    rows = slice(start, end)
    n = end - start
    onset = np.minimum(1.0, np.arange(n) / FAULT_ONSET_ROWS)
    creep = np.arange(n) / n
    rng = np.random.default_rng(start * 31 + end)
    if fault == "valve":
        out[rows, flow] *= 1 - 0.12 * onset
        out[rows, pressure] *= 1 + 0.08 * onset
        out[rows, current] *= 1 - 0.04 * onset
        out[rows, power] *= 1 - 0.04 * onset
    elif fault == "cavitation":
        out[rows, vibration] += 0.3 * onset + rng.normal(0, 0.15, n)
        out[rows, flow] += rng.normal(0, 6, n) * onset
        out[rows, pressure] *= 1 - 0.03 * onset
    elif fault == "bearing":
        out[rows, bearing] += 4.0 * creep
        out[rows, vibration] += 0.15 * creep
    else:
        raise ValueError(f"unknown pump fault {fault!r}")
    return out


def evaluate_pump_labelled(
    fault: str, seed: int, rows: int, work: Path, config: TrainConfig
) -> dict[str, object]:
    """Every detector fitted on the first `rows` rows of one pump recording with `fault` later on, scored on
    every later row against the fault's labels."""
    start, end = PUMP_FAULT_ROWS
    clean = make_pump_series(PUMP_RECORDING_ROWS, seed=seed, duty_levels=PUMP_DUTY_RPM)
    values = with_pump_fault(clean, fault, start, end)
    labels = np.zeros(PUMP_RECORDING_ROWS, np.int8)
    labels[start:end] = 1
    series = LabelledSeries(
        name=f"pump-{fault}-{seed}",
        group="pump",
        channels=list(PUMP_CHANNELS),
        train=values[:rows],
        test=values[rows:],
        test_labels=labels[rows:],
        blanked_train_rows=0,
    )
    return {
        "train_rows": rows,
        "test_rows": len(series.test),
        "anomaly_share": float(labels[rows:].mean()),
        "detectors": _every_detector(series, work, detection_judge(labels[rows:]), config),
    }


def pooled(machines: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """Each detector's counts summed over the recordings, point-wise and under the agent's rule."""
    figures: dict[str, list[dict[str, object]]] = {}
    for result in machines.values():
        for name, entry in result["detectors"].items():  # type: ignore[attr-defined]
            figures.setdefault(name, []).append(entry)
    return {
        name: {
            "point_wise": pooled_counts(entries).summary(),
            "alert_rule": pooled_counts([{"counts": e["counts_alert_rule"]} for e in entries]).summary(),
        }
        for name, entries in figures.items()
    }


def _print_labelled(machines: dict[str, dict[str, object]]) -> None:
    print("| machine | detector | F1 | precision | recall | FAR | AUC-PR | F1 / FAR under the agent's rule |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for machine, result in machines.items():
        for name, figures in result["detectors"].items():  # type: ignore[attr-defined]
            auc = "-" if figures["auc_pr"] is None else f"{figures['auc_pr']:.3f}"
            rule = figures["alert_rule"]
            print(
                f"| {machine} | {name} | {figures['f1']:.3f} | {figures['precision'] or 0:.3f} | "
                f"{figures['recall']:.3f} | {figures['false_alarm_rate']:.4f} | {auc} | "
                f"{rule['f1']:.3f} / {rule['false_alarm_rate']:.4f} |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--rows", type=int, default=500, help="normal rows each detector is fitted on")
    parser.add_argument("--name", default="small_data", help="results file: benchmarks/results/NAME.json")
    parser.add_argument("--work", type=Path, default=Path("runs") / "detection" / "small_data")
    parser.add_argument(
        "--pump",
        action="store_true",
        help="generated pump recordings at one duty point instead of SMD (no datasets read)",
    )
    parser.add_argument(
        "--labelled",
        action="store_true",
        help="fit on the training file's last rows, score the labelled test file",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="section.key=value",
        help="a trainer setting for EdgeGAN's fits, as `detection.tep` takes it (fit.seed=1: another seed)",
    )
    args = parser.parse_args(argv)
    config = benchmark_config(False, parse_settings(args.set))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.labelled and args.pump:
        recordings = {
            f"pump-{fault}-{seed}": evaluate_pump_labelled(fault, seed, args.rows, args.work / fault, config)
            for fault, seed in PUMP_FAULTS
        }
        totals = pooled(recordings)
        write_result(
            args.name,
            {"protocol": "pump_labelled", "settings": args.set, "machines": recordings, "pooled": totals},
        )
        _print_labelled(recordings)
        print("| detector | pooled F1 / FAR | under the agent's rule |")
        print("| --- | --- | --- |")
        for name, figures in totals.items():
            point, rule = figures["point_wise"], figures["alert_rule"]
            print(
                f"| {name} | {point['f1']:.3f} / {point['false_alarm_rate']:.4f} | "  # type: ignore[index]
                f"{rule['f1']:.3f} / {rule['false_alarm_rate']:.4f} |"  # type: ignore[index]
            )
        return 0
    if args.labelled:
        labelled = {
            m: evaluate_labelled(args.datasets, m, args.rows, args.work / f"{m}-labelled", config)
            for m in MACHINES
        }
        write_result(args.name, {"protocol": "labelled", "settings": args.set, "machines": labelled})
        _print_labelled(labelled)
        return 0
    if args.pump:
        machines = {
            f"pump-{s}": evaluate_pump(s, args.rows, args.work / f"pump-{s}", config) for s in PUMP_SEEDS
        }
    else:
        machines = {m: evaluate(args.datasets, m, args.rows, args.work / m, config) for m in MACHINES}
    protocol = "pump" if args.pump else "smd"
    write_result(args.name, {"protocol": protocol, "settings": args.set, "machines": machines})
    print(
        "| machine | detector | alarm share on later normal rows | by fifth | under the agent's rule "
        "| later / holdout q50, q99 |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for machine, result in machines.items():
        for name, figures in result["detectors"].items():  # type: ignore[attr-defined]
            fifths = " ".join(f"{v:.3f}" for v in figures["alarm_share_by_fifth"])
            print(
                f"| {machine} | {name} | {figures['alarm_share']:.4f} | {fifths} | "
                f"{figures['alarm_share_alert_rule']:.4f} | {figures['q50']:.2f}, {figures['q99']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
