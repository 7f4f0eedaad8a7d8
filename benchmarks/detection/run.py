"""Detection benchmark: EdgeGAN against baselines on NAB and SMD, same windows, same splits.

Usage: python -m benchmarks.detection.run [--datasets DIR] [--groups realKnownCause,realAWSCloudwatch,SMD]
                                          [--quick] [--cache runs/detection] [--fresh]
Per series it fits every detector on the training part's windows, takes each one's threshold from the
holdout (the tail of the training part) with the same POT rule and false-alarm budget as EdgeGAN's own
calibration, and scores one window per test row. Results are cached per series (a cut-off run resumes);
the pooled table goes to benchmarks/results/detection.json and the report to benchmarks/REPORT.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.detection import baselines, matched, metrics, ours
from benchmarks.detection.alert_rule import counted_under_rule
from benchmarks.detection.datasets import DEFAULT_ROOT, LabelledSeries, fill_nan, load_all
from benchmarks.environment import write_result
from edge_agent.bundle import Threshold
from trainer.build import build_bundle
from trainer.calibrate import TRAIN_CALIBRATION_CAP, calibrate, evenly_spaced
from trainer.config import TrainConfig
from trainer.csv_data import load_training_data
from trainer.errors import TrainerError
from trainer.windows import Normaliser, WindowSets, build_windows, slide

log = logging.getLogger("benchmarks.detection")
REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"
OURS_FP32, OURS_INT8, OURS_DAEMON = "EdgeGAN ORT FP32", "EdgeGAN ORT INT8", "EdgeGAN daemon (INT8)"


Setting = float | str | dict[str, float]


def benchmark_config(quick: bool, settings: dict[str, Setting] | None = None) -> TrainConfig:
    """Default model settings; blanked label rows split the training data instead of failing it.

    `settings` measures a model variant: dotted config keys and values, e.g. {"score.latent_weight": 0.5}.
    """
    overrides: dict[str, dict[str, object]] = {"data": {"on_long_gap": "split"}}
    if quick:
        overrides["fit"] = {"epochs": 20, "encoder_epochs": 10, "max_train_windows": 256}
        # cross-fitting would add four fits per series; the contract tests cover it
        overrides["score"] = {"cross_fit_folds": 0}
    for key, value in (settings or {}).items():
        section, _, name = key.partition(".")
        overrides.setdefault(section, {})[name] = value
    return TrainConfig.model_validate(overrides)


def parse_settings(pairs: list[str]) -> dict[str, Setting]:
    """`--set section.key=value` pairs, checked against the trainer's config: numbers, a choice such as
    `score.calibrate_on=holdout`, or a JSON object for a mapping such as `score.severity_levels`."""
    defaults = TrainConfig().model_dump()
    settings: dict[str, Setting] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        section, _, name = key.partition(".")
        if not sep or name not in defaults.get(section, {}):
            raise SystemExit(f"--set {pair!r}: expected section.key=value with a trainer config key")
        default = defaults[section][name]
        if isinstance(default, dict):
            settings[key] = _mapping(pair, value)
        else:
            settings[key] = value if isinstance(default, str) else float(value)
    return settings


def _mapping(pair: str, value: str) -> dict[str, float]:
    """A JSON object of numbers, e.g. '{"warning": 0.01}'."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--set {pair!r}: expected a JSON object of numbers ({err.msg})") from None
    if not isinstance(parsed, dict) or not all(isinstance(v, int | float) for v in parsed.values()):
        raise SystemExit(f"--set {pair!r}: expected a JSON object of numbers")
    return {str(k): float(v) for k, v in parsed.items()}


ANOGAN_GROUPS = ("SMD", "NAB realKnownCause", "Generated", "TEP")  # PyOD AnoGAN's subset: slow to fit


def make_baselines(quick: bool, group: str = "SMD") -> list[baselines.Detector]:
    """Fresh baseline detectors; quick mode shrinks only their training budgets.

    PyOD's AnoGAN runs on SMD and NAB realKnownCause only: its fit (a latent search per training window)
    takes minutes per series, and the issue allows a subset.
    """
    detectors: list[baselines.Detector] = [
        baselines.IsolationForestDetector(),
        baselines.PcaDetector("Q"),
        baselines.PcaDetector("T2"),
        baselines.ConvAutoencoderDetector(
            epochs=3 if quick else 40, windows_per_epoch=512 if quick else 4096
        ),
    ]
    if group in ANOGAN_GROUPS:
        # quick: 50 windows, since its fit searches a latent per window (20 steps each): at 200 it took 67 of
        # the harness test's 146 s (cProfile, beside another job)
        anogan = baselines.PyodAnoGanDetector(epochs=3 if quick else 100, fit_windows=50 if quick else 500)
        detectors.append(anogan)
    return detectors


def _normalise(windows: npt.NDArray[np.float32], normaliser: Normaliser) -> npt.NDArray[np.float32]:
    return ((windows - normaliser.mean) / normaliser.scale).astype(np.float32)


def _test_windows(series: LabelledSeries, window_len: int) -> npt.NDArray[np.float32]:
    """One window per test row, ending on it; the first ones reach back into the training part."""
    history = fill_nan(series.train[-(window_len - 1) :])
    return slide(np.vstack([history, series.test]), window_len, 1)


class FitRefused(Exception):
    """EdgeGAN's fit refused the series earlier (its reason was recorded in the cache)."""


class NotRun(Exception):
    """A detector's result for a series is not in the cache (report-only runs)."""


def calibrated(
    holdout_scores: npt.NDArray[np.floating],
    config: TrainConfig,
    train_scores: npt.NDArray[np.floating] | None = None,
) -> Threshold:
    """Every detector's threshold and severity levels: EdgeGAN's own calibration rule (POT at its
    false-alarm budget on the holdout's scores; with `score.calibrate_on: holdout_and_train`, the stricter of
    that and the same on the training windows' scores, `train_scores`), each level at its own budget."""
    score = config.score
    return calibrate(
        holdout_scores,
        score.false_alarm_budget,
        score.calibration,
        score.pot_initial_quantile,
        train_scores if score.uses_training_windows else None,
        score.severity_levels,
    )


def calibrated_threshold(
    holdout_scores: npt.NDArray[np.floating],
    config: TrainConfig,
    train_scores: npt.NDArray[np.floating] | None = None,
) -> float:
    """The alert threshold alone (`calibrated`)."""
    return calibrated(holdout_scores, config, train_scores).value


def level_entries(
    flags_by_level: dict[str, tuple[npt.NDArray[np.bool_], float | None]], labels: npt.NDArray[np.int8]
) -> dict[str, dict[str, object]]:
    """Counts at each severity level: what a deployment that alerts only at that level would see."""
    return {
        name: {"counts": asdict(metrics.count(flags, labels)), "threshold": threshold}
        for name, (flags, threshold) in flags_by_level.items()
    }


def train_calibration_windows(prepared: Prepared, config: TrainConfig) -> npt.NDArray[np.float32] | None:
    """The training windows EdgeGAN's fit scores for its threshold (evenly spaced), normalised; None when
    the rule does not use them."""
    if not config.score.uses_training_windows:
        return None
    return prepared.normalised(evenly_spaced(prepared.sets.train))


def untouched_normal_rows(labels: npt.NDArray[np.int8], window_len: int) -> npt.NDArray[np.bool_]:
    """Normal test rows whose window (the row and the `window_len - 1` before it) holds no labelled row."""
    padded = np.concatenate([np.zeros(window_len - 1, dtype=labels.dtype), labels])
    touched = np.lib.stride_tricks.sliding_window_view(padded, window_len).max(axis=1) > 0
    return ~touched


def _entry(
    scores: npt.NDArray[np.float64] | None,
    predicted: npt.NDArray[np.bool_],
    labels: npt.NDArray[np.int8],
    fit_s: float,
    score_s: float,
    threshold: float | None,
    beyond_holdout: tuple[float, npt.NDArray[np.bool_]] | None = None,
) -> dict[str, object]:
    """`beyond_holdout`: the highest holdout score and the untouched normal rows (`untouched_normal_rows`).
    Those of them that score above it are out of reach of any threshold taken from the training part, short
    of extrapolating past everything it showed."""
    above, untouched = None, None
    if scores is not None and beyond_holdout is not None:
        holdout_max, mask = beyond_holdout
        above, untouched = int((scores[mask] > holdout_max).sum()), int(mask.sum())
    return {
        "counts": asdict(metrics.count(predicted, labels)),
        "auc_pr": metrics.average_precision(scores, labels) if scores is not None else None,
        "threshold": threshold,
        "alarm_rate": float(predicted.mean()),
        "fit_seconds": round(fit_s, 2),
        "score_us_per_window": round(score_s / len(labels) * 1e6, 2),
        "normal_above_holdout_max": above,
        "untouched_normal_rows": untouched,
    }


@dataclass
class Prepared:
    """One series cut into the windows every detector sees."""

    series: LabelledSeries
    train_csv: Path
    sets: WindowSets
    test_windows: npt.NDArray[np.float32]

    def normalised(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return _normalise(windows, self.sets.normaliser)

    @cached_property
    def untouched_normal(self) -> npt.NDArray[np.bool_]:
        """The test rows whose window holds no labelled row (`untouched_normal_rows`), once per series."""
        return untouched_normal_rows(self.series.test_labels, self.test_windows.shape[1])


def prepare(series: LabelledSeries, config: TrainConfig, folder: Path, spread_floor: float = 0.0) -> Prepared:
    """The training CSV (for EdgeGAN's own fit) and the train/holdout/test windows (for everyone).

    The baselines' windows get a plain z-score (`spread_floor` 0), the preprocessing a user would pick for
    them; EdgeGAN normalises inside its own bundle, with its own floor. `baseline_floor` measures the
    baselines with the floor too.
    """
    folder.mkdir(parents=True, exist_ok=True)
    train_csv = series.write_train_csv(folder / "train.csv")
    data = load_training_data(train_csv, config.data)
    window_len = config.model.window_len
    sets = build_windows(
        data.segments, window_len, config.fit.train_stride, config.data.holdout_fraction, spread_floor
    )
    return Prepared(series, train_csv, sets, _test_windows(series, window_len))


def fit_and_calibrate(
    detector: baselines.Detector, prepared: Prepared, config: TrainConfig
) -> tuple[float, npt.NDArray[np.float64], Threshold]:
    """Fit on the training windows and calibrate by EdgeGAN's rule: fit seconds, holdout scores, threshold."""
    started = time.perf_counter()
    detector.fit(prepared.normalised(prepared.sets.train))
    fit_s = time.perf_counter() - started
    holdout_scores = detector.score(prepared.normalised(prepared.sets.holdout))
    train_windows = train_calibration_windows(prepared, config)
    train_scores = None if train_windows is None else detector.score(train_windows)
    return fit_s, holdout_scores, calibrated(holdout_scores, config, train_scores)


def run_baseline(
    detector: baselines.Detector, prepared: Prepared, config: TrainConfig
) -> tuple[dict[str, object], npt.NDArray[np.float64]]:
    """Fit on the training windows, threshold on the holdout (POT, EdgeGAN's budget), score the test."""
    labels = prepared.series.test_labels
    fit_s, holdout_scores, calibration = fit_and_calibrate(detector, prepared, config)
    threshold = calibration.value
    test = prepared.normalised(prepared.test_windows)
    started = time.perf_counter()
    scores = detector.score(test)
    score_s = time.perf_counter() - started
    beyond = (float(holdout_scores.max()), prepared.untouched_normal)
    entry = _entry(scores, scores > threshold, labels, fit_s, score_s, threshold, beyond)
    levels = {name: (scores > lv.value, lv.value) for name, lv in calibration.levels.items()}
    entry["levels"] = level_entries(levels, labels)
    entry["alert_rule"] = {"counts": asdict(counted_under_rule(scores, threshold, labels))}
    return entry, scores


def run_edgegan(
    prepared: Prepared, config: TrainConfig, folder: Path
) -> tuple[dict[str, dict[str, object]], dict[str, npt.NDArray[np.float64]]]:
    """The real fit, both ONNX graphs, and the daemon's decisions through `edge-agent score`."""
    labels = prepared.series.test_labels
    bundle_dir = folder / "bundle"
    shutil.rmtree(bundle_dir, ignore_errors=True)
    started = time.perf_counter()
    build_bundle(prepared.train_csv, bundle_dir, config)
    fit_s = time.perf_counter() - started
    entries: dict[str, dict[str, object]] = {}
    traces: dict[str, npt.NDArray[np.float64]] = {}
    for name, precision in ((OURS_FP32, "fp32"), (OURS_INT8, "int8")):
        graph = ours.score_graph(bundle_dir, precision, prepared.test_windows)
        predicted = graph.scores > graph.threshold
        holdout_max = float(ours.score_graph(bundle_dir, precision, prepared.sets.holdout).scores.max())
        beyond = (holdout_max, prepared.untouched_normal)
        entries[name] = _entry(graph.scores, predicted, labels, fit_s, graph.seconds, graph.threshold, beyond)
        levels = {level: (graph.scores > value, value) for level, value in graph.levels.items()}
        entries[name]["levels"] = level_entries(levels, labels)
        entries[name]["alert_rule"] = {
            "counts": asdict(counted_under_rule(graph.scores, graph.threshold, labels))
        }
        traces[name] = graph.scores
    history = config.model.window_len - 1
    test_csv = prepared.series.write_test_csv(folder / "test.csv", history)
    started = time.perf_counter()
    states = ours.daemon_states(bundle_dir, test_csv, folder / "daemon.csv", history)
    daemon_s = time.perf_counter() - started
    entries[OURS_DAEMON] = _entry(traces[OURS_INT8], states, labels, fit_s, daemon_s, None)
    entries[OURS_DAEMON]["alert_rule"] = {"counts": entries[OURS_DAEMON]["counts"]}  # the rule itself
    daemon_levels = {
        level: (
            ours.daemon_states(bundle_dir, test_csv, folder / f"daemon-{level}.csv", history, level),
            None,
        )
        for level in config.score.severity_levels
    }
    entries[OURS_DAEMON]["levels"] = level_entries(daemon_levels, labels)
    traces[OURS_DAEMON] = states.astype(np.float64)
    return entries, traces


def _key(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _split_key(config: TrainConfig, quick: bool) -> str:
    """What the baselines' windows and thresholds depend on: their results are reused while it stays the same.

    EdgeGAN-only settings (its spread floor, its score's weights and floors) are left out of it.
    """
    threshold_rule = {
        "false_alarm_budget", "calibration", "pot_initial_quantile", "calibrate_on", "severity_levels"
    }  # fmt: skip
    return _key(
        {
            "data": config.data.model_dump(mode="json", exclude={"spread_floor"}),
            "window": config.model.window_len,
            "stride": config.fit.train_stride,
            "threshold": config.score.model_dump(mode="json", include=threshold_rule),
            "quick": quick,
        }
    )


def _series_folder(cache: Path, series: LabelledSeries) -> Path:
    return cache / f"{series.group.replace(' ', '_')}__{series.name}"


def edgegan_folder(cache: Path, series: LabelledSeries, config: TrainConfig, quick: bool = False) -> Path:
    """Where one series' EdgeGAN result (bundle, traces, counts) for this whole config is cached."""
    key = _key(config.model_dump(mode="json"))
    return _series_folder(cache, series) / f"edgegan-{key}-{_split_key(config, quick)}"


def forget(
    cache: Path,
    series_list: list[LabelledSeries],
    config: TrainConfig,
    quick: bool,
    ours: bool,
    baselines: bool,
) -> None:
    """`--fresh`: drop the cached results this run would compute (these series, these detectors, this
    configuration) and nothing else, so refitting one series leaves other series, seeds and variants be."""
    for series in series_list:
        folders = [edgegan_folder(cache, series, config, quick)] if ours else []
        folders += [baseline_folder(cache, series, config, quick)] if baselines else []
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def baseline_folder(cache: Path, series: LabelledSeries, config: TrainConfig, quick: bool = False) -> Path:
    """Where one series' baseline results (scores and counts per detector) are cached."""
    return _series_folder(cache, series) / f"baselines-{_split_key(config, quick)}"


def evaluate_series(
    series: LabelledSeries,
    config: TrainConfig,
    cache: Path,
    quick: bool,
    detector_factory: Callable[[bool, str], list[baselines.Detector]] = make_baselines,
    with_ours: bool = True,
    with_baselines: bool = True,
    cached_only: bool = False,
) -> dict[str, object]:
    """Every detector on one series, each result cached on its own; returns the merged entry.

    `cached_only` computes nothing: a series with any result missing raises NotRun.
    """
    folder = _series_folder(cache, series)
    ours_folder = edgegan_folder(cache, series, config, quick)
    merged = folder / f"merged-{ours_folder.name}"
    prepared: Prepared | None = None
    entries: dict[str, dict[str, object]] = {}
    traces: dict[str, npt.NDArray[np.float64]] = {"labels": series.test_labels.astype(np.float64)}
    if with_ours:
        refused = ours_folder / "failed.txt"  # a quality gate refused the fit: recorded, not retried
        if refused.is_file():
            raise FitRefused(refused.read_text())
        if cached_only and not (ours_folder / "result.json").is_file():
            raise NotRun("EdgeGAN")
        if not (ours_folder / "result.json").is_file():
            prepared = prepare(series, config, folder / "work")
            ours_folder.mkdir(parents=True, exist_ok=True)
            try:
                ours_entries, ours_traces = run_edgegan(prepared, config, ours_folder)
            except TrainerError as err:
                refused.write_text(f"EdgeGAN fit refused: {type(err).__name__}: {err}")
                raise
            np.savez_compressed(ours_folder / "traces.npz", **ours_traces)
            (ours_folder / "result.json").write_text(json.dumps(ours_entries, indent=1))
        entries.update(json.loads((ours_folder / "result.json").read_text()))
        traces.update(dict(np.load(ours_folder / "traces.npz")))
    for detector in detector_factory(quick, series.group) if with_baselines else []:
        stem = baseline_folder(cache, series, config, quick) / detector.name.replace(" ", "_")
        if cached_only and not stem.with_suffix(".json").is_file():
            raise NotRun(detector.name)
        if not stem.with_suffix(".json").is_file():
            prepared = prepared or prepare(series, config, folder / "work")
            entry, scores = run_baseline(detector, prepared, config)
            stem.parent.mkdir(parents=True, exist_ok=True)
            np.save(stem.with_suffix(".npy"), scores)
            stem.with_suffix(".json").write_text(json.dumps(entry, indent=1))
        entries[detector.name] = json.loads(stem.with_suffix(".json").read_text())
        traces[detector.name] = np.load(stem.with_suffix(".npy"))
    merged.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(merged / "traces.npz", **traces)
    return {
        "series": series.name,
        "group": series.group,
        "test_rows": len(series.test_labels),
        "test_positive_rows": int(series.test_labels.sum()),
        "train_rows": len(series.train),
        "blanked_train_rows": series.blanked_train_rows,
        "detectors": entries,
        "_traces": str(merged / "traces.npz"),
    }


def run_all(
    series_list: list[LabelledSeries],
    config: TrainConfig,
    cache: Path,
    quick: bool,
    detector_factory: Callable[[bool, str], list[baselines.Detector]] = make_baselines,
    with_ours: bool = True,
    with_baselines: bool = True,
    cached_only: bool = False,
) -> list[dict[str, object]]:
    """Evaluate each series; a failure is recorded for that series and the run goes on."""
    results = []
    for index, series in enumerate(series_list, 1):
        started = time.perf_counter()
        try:
            entry = evaluate_series(
                series, config, cache, quick, detector_factory, with_ours, with_baselines, cached_only
            )
        except NotRun as missing:
            entry = {"series": series.name, "group": series.group, "not_run": f"no result yet for {missing}"}
        except Exception as err:  # noqa: BLE001 - one failed series must not end the run; it is recorded
            log.exception("series %s failed", series.name)
            entry = {"series": series.name, "group": series.group, "failed": f"{type(err).__name__}: {err}"}
        seconds = round(time.perf_counter() - started, 1)
        print(f"[{index}/{len(series_list)}] {series.group} {series.name}: {seconds} s", flush=True)
        results.append(entry)
    return results


def pool(results: list[dict[str, object]]) -> dict[str, dict[str, dict[str, object]]]:
    """Per group and detector: pooled point-wise and event metrics, mean AUC-PR, references.

    Only series where every detector ran are pooled, so every row of a group's table covers the same rows.
    """
    table: dict[str, dict[str, dict[str, object]]] = {}
    groups = sorted({str(r["group"]) for r in results})
    for group in groups:
        members = [r for r in results if r["group"] == group and "failed" not in r and "not_run" not in r]
        if not members:
            continue
        names = list(members[0]["detectors"])
        rows: dict[str, dict[str, object]] = {}
        for name in names:
            total = pooled_counts([m["detectors"][name] for m in members])
            aucs = [m["detectors"][name]["auc_pr"] for m in members]
            aucs = [a for a in aucs if a is not None]
            rows[name] = {
                **total.summary(),
                "auc_pr_mean": float(np.mean(aucs)) if aucs else None,
                "fit_seconds_total": round(sum(m["detectors"][name]["fit_seconds"] for m in members), 1),
                "normal_share_above_holdout_max": _pooled_share_above(members, name),
                "score_us_per_window_mean": round(
                    float(np.mean([m["detectors"][name]["score_us_per_window"] for m in members])),
                    2,
                ),
            }
        rows["reference: all ones"] = _reference(members, lambda labels: [np.ones(len(labels), dtype=bool)])
        rows["reference: random 1% alarms"] = _reference(
            members, lambda labels: [c for c in _random_predictions(labels)]
        )
        table[group] = {
            "series": [str(m["series"]) for m in members],
            "not_run": [str(r["series"]) for r in results if r["group"] == group and "not_run" in r],
            "failed": [
                f"{r['series']}: {r['failed']}" for r in results if r["group"] == group and "failed" in r
            ],
            "test_rows": sum(int(m["test_rows"]) for m in members),
            "test_positive_rows": sum(int(m["test_positive_rows"]) for m in members),
            "detectors": rows,
            "matched": matched.comparisons(members, OURS_INT8),
            "levels": _pooled_levels(members, names),
            "alert_rule": _pooled_alert_rule(members, names),
        }
    return table


def _pooled_alert_rule(
    members: list[dict[str, object]], names: list[str]
) -> dict[str, dict[str, float | None]]:
    """Each detector's pooled metrics under the agent's alert rule; a detector is left out where any series
    lacks them (results carried from before they were measured)."""
    entries = [m["detectors"] for m in members]
    rows: dict[str, dict[str, float | None]] = {}
    for name in names:
        found = [e[name].get("alert_rule") for e in entries]
        if all(found):
            rows[name] = pooled_counts(found).summary()
    return rows


def _pooled_levels(
    members: list[dict[str, object]], names: list[str]
) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per severity level, each detector's pooled metrics there; a detector is left out of a level where any
    series lacks it (results carried from before the levels existed)."""
    entries = [m["detectors"] for m in members]
    level_names = sorted({level for e in entries for d in e.values() for level in d.get("levels", {})})
    pooled: dict[str, dict[str, dict[str, float | None]]] = {}
    for level in level_names:
        rows: dict[str, dict[str, float | None]] = {}
        for name in names:
            found = [e[name].get("levels", {}).get(level) for e in entries]
            if all(found):
                rows[name] = pooled_counts(found).summary()
        pooled[level] = rows
    return pooled


def pooled_counts(entries: list[dict[str, object]]) -> metrics.Counts:
    """One detector's counts summed over series (entries hold a `counts` dict each)."""
    counts = [metrics.Counts(**entry["counts"]) for entry in entries]  # type: ignore[arg-type]
    return sum(counts[1:], counts[0])


def _pooled_share_above(members: list[dict[str, object]], name: str) -> float | None:
    """Share of the group's untouched normal test rows scoring above the holdout's maximum; None if not
    measured."""
    entries = [m["detectors"][name] for m in members]
    if any(e.get("normal_above_holdout_max") is None for e in entries):
        return None
    above = sum(int(e["normal_above_holdout_max"]) for e in entries)
    return above / max(1, sum(int(e["untouched_normal_rows"]) for e in entries))


def _random_predictions(labels: npt.NDArray[np.int8]) -> list[npt.NDArray[np.bool_]]:
    return [np.random.default_rng(seed).random(len(labels)) < 0.01 for seed in range(5)]


def _reference(
    members: list[dict[str, object]],
    predictions: Callable[[npt.NDArray[np.int8]], list[npt.NDArray[np.bool_]]],
) -> dict[str, object]:
    """Pooled metrics of a label-blind detector, averaged over its random draws."""
    summaries = []
    draws = len(predictions(np.zeros(1, dtype=np.int8)))
    for draw in range(draws):
        total: metrics.Counts | None = None
        for member in members:
            labels = np.load(Path(str(member["_traces"])))["labels"].astype(np.int8)
            counts = metrics.count(predictions(labels)[draw], labels)
            total = counts if total is None else total + counts
        assert total is not None
        summaries.append(total.summary())
    keys = summaries[0].keys()
    return {k: float(np.mean([s[k] for s in summaries if s[k] is not None])) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--groups", default="realKnownCause,realAWSCloudwatch,SMD")
    parser.add_argument("--quick", action="store_true", help="short fits: a smoke run of the harness")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "detection")
    parser.add_argument(
        "--fresh", action="store_true", help="refit: drop the cached results of the series and detectors run"
    )
    parser.add_argument("--series", help="only series whose name contains this")
    parser.add_argument("--baselines-only", action="store_true", help="fill the baselines' cache, no report")
    parser.add_argument("--ours-only", action="store_true", help="fill EdgeGAN's cache, no report")
    parser.add_argument("--report-only", action="store_true", help="report on cached results; fit nothing")
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="copy detection/summary.md into REPORT.md's hand-written part, keeping its tables; fit nothing",
    )
    parser.add_argument(
        "--carry",
        action="store_true",
        help="report the groups not run now from the last results/detection.json, marked as carried",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="measure a model variant with this trainer setting (repeatable); needs --variant",
    )
    parser.add_argument(
        "--variant",
        default="",
        help="name of the variant: writes results/detection_<variant>.json and results/REPORT.<variant>.md",
    )
    args = parser.parse_args()
    if args.summary_only:
        from benchmarks.detection.report import refresh_summary

        changed = refresh_summary()
        print("REPORT.md's summary " + ("replaced by summary.md" if changed else "already is summary.md"))
        return
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = parse_settings(args.set)
    if bool(settings) != bool(args.variant):
        raise SystemExit(
            "--set and --variant go together: a variant's results must not overwrite the default's"
        )
    config = benchmark_config(args.quick, settings)
    series_list = load_all(args.datasets, tuple(args.groups.split(",")))
    if args.series:
        series_list = [s for s in series_list if args.series in s.name]
    if args.fresh:
        forget(args.cache, series_list, config, args.quick, not args.baselines_only, not args.ours_only)
    results = run_all(
        series_list, config, args.cache, args.quick, with_ours=not args.baselines_only,
        with_baselines=not args.ours_only, cached_only=args.report_only,
    )  # fmt: skip
    if args.baselines_only or args.ours_only:
        return
    if args.carry:
        run_now = {s.group for s in series_list}
        others = [s for s in load_all(args.datasets) if s.group not in run_now]
        results += carried_results(RESULTS / "detection.json", others, args.cache)
    payload = finish(results, config, args.cache, args.quick, args.variant)
    tag = "quick" if args.quick else args.variant
    path = write_result(f"detection_{tag}" if tag else "detection", payload)
    print(f"wrote {path}")


def carried_results(
    previous: Path, carried_series: list[LabelledSeries], cache: Path
) -> list[dict[str, object]]:
    """Series not run now (`carried_series`), as the last results file measured them.

    Lets one dataset be re-measured after a model change without refitting the others; the report says
    which groups are carried and from when. The counts come from the file; the labels (for the label-blind
    references) come from the data, kept beside the cache.
    """
    if not previous.is_file():
        raise SystemExit(f"--carry: no earlier results at {previous}")
    earlier = json.loads(previous.read_text())
    stamp = str(earlier.get("machine", {}).get("measured_at", "an earlier run"))
    wanted = {(s.group, s.name): s for s in carried_series}
    carried: list[dict[str, object]] = []
    for entry in earlier["series"]:
        series = wanted.get((entry["group"], entry["series"]))
        if series is None:
            continue
        labels = _series_folder(cache, series) / "labels.npz"
        labels.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(labels, labels=series.test_labels.astype(np.float64))
        carried.append({**entry, "carried_from": entry.get("carried_from", stamp), "_traces": str(labels)})
    return carried


def _threshold_rule(config: TrainConfig) -> str:
    """The report's words for every detector's threshold rule."""
    pot = f"POT (initial quantile {config.score.pot_initial_quantile})"
    if config.score.uses_training_windows:
        return (
            f"the higher of {pot} on the holdout's scores and {pot} on the scores of up to "
            f"{TRAIN_CALIBRATION_CAP:,} training windows spread evenly over the training part"
        )
    return f"{pot} on the holdout's scores"


def finish(
    results: list[dict[str, object]], config: TrainConfig, cache: Path, quick: bool, variant: str = ""
) -> dict[str, object]:
    """Pool, attach trace paths for the report, and write REPORT.md (quick runs write REPORT.quick.md)."""
    from benchmarks.detection.report import write_report

    pooled = pool(results)
    payload: dict[str, object] = {
        "settings": {
            "window_len": config.model.window_len,
            "false_alarm_budget": config.score.false_alarm_budget,
            "threshold_rule": _threshold_rule(config),
            "holdout_fraction": config.data.holdout_fraction,
            "score": config.score.model_dump(mode="json"),
            "quick": quick,
        },
        "groups": pooled,
        "series": [{k: v for k, v in r.items() if k != "_traces"} for r in results],
    }
    write_report(payload, results, quick, variant=variant)
    return payload


if __name__ == "__main__":
    main()
