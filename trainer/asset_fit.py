"""`edge-trainer fit-assets`: one bundle per asset, fitted by parallel worker processes, with a summary.

An asset is a sub-folder of the data folder (its CSV files, in name order) or a single CSV file in it (the
asset is the file's stem). Each worker process fits one asset at a time with `fit.threads` torch and ONNX
Runtime threads, cut down so that workers x threads does not exceed the cores this process may use: both
libraries spin-wait their thread pools, and oversubscribed spinning on a busy machine slows every fit several
times over (a CI run saw the four-asset contract test pass 600 s; on an idle 2-core machine it took 152 s
with 2 x 2 threads and 49 s with 2 x 1). One asset failing (bad data,
a quality gate) does not stop the others; it is listed with its reason and the command exits non-zero.

When one bundle per asset wins, and when one shared bundle does, is in docs of the README ("Many assets").
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_agent.errors import DataError
from trainer.config import TrainConfig
from trainer.cores import threads_per_worker, usable_cores
from trainer.csv_data import DATA_SUFFIXES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssetResult:
    """One row of the summary."""

    asset: str
    status: str  # "ok" or "failed"
    bundle: str | None
    rows_train: int | None
    fit_seconds: float
    threshold_int8: float | None
    auroc_int8: float | None
    error: str | None = None


def find_assets(data: Path) -> dict[str, Path]:
    """Asset name -> its data (a folder of files, or one file)."""
    if not data.is_dir():
        raise DataError(f"--data {data}: expected a folder with one sub-folder or CSV file per asset")
    assets: dict[str, Path] = {}
    for entry in sorted(data.iterdir()):
        if entry.is_dir():
            assets[entry.name] = entry
        elif entry.is_file() and entry.suffix.lower() in DATA_SUFFIXES:
            assets[entry.stem] = entry
    if not assets:
        raise DataError(f"--data {data}: no asset sub-folders or data files")
    clash = sorted(name for name in assets if not name.replace("-", "").replace("_", "").isalnum())
    if clash:
        raise DataError(f"asset names must be letters, digits, '-' or '_': {', '.join(clash)}")
    return assets


def worker_config(config: TrainConfig, workers: int, cores: int) -> TrainConfig:
    """The config each worker fits with: fit.threads cut to its share of the cores."""
    threads = threads_per_worker(config.fit.threads, workers, cores)
    if threads == config.fit.threads:
        return config
    log.info(
        "fit.threads %d -> %d per worker: %d workers share %d cores",
        config.fit.threads,
        threads,
        workers,
        cores,
    )
    return config.model_copy(update={"fit": config.fit.model_copy(update={"threads": threads})})


def _label_logs(asset: str) -> None:
    """Prefix this worker's log lines with the asset it is fitting now (a worker fits several in turn)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(levelname)s [{asset}] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)


def _fit_one(asset: str, data: Path, out: Path, config_json: str) -> AssetResult:
    """Worker: one full fit (runs in its own process)."""
    from edge_agent.bundle import SCORER_INT8
    from trainer.build import build_bundle

    _label_logs(asset)
    config = TrainConfig.model_validate_json(config_json)
    started = time.perf_counter()
    try:
        result = build_bundle(data, out / asset, config)
    except Exception as err:  # noqa: BLE001 - reported in the summary; the other assets go on
        seconds = round(time.perf_counter() - started, 1)
        return AssetResult(asset, "failed", None, None, seconds, None, None, f"{type(err).__name__}: {err}")
    manifest = result.bundle.manifest
    detection = manifest.validation.get("detection", {})
    int8 = detection.get(SCORER_INT8, {}) if isinstance(detection, dict) else {}
    auroc = int8.get("auroc_synthetic") if isinstance(int8, dict) else None
    return AssetResult(
        asset=asset,
        status="ok",
        bundle=str(result.bundle.path),
        rows_train=manifest.provenance.rows_train,
        fit_seconds=round(result.fit_seconds, 1),
        threshold_int8=manifest.thresholds[SCORER_INT8].value,
        auroc_int8=float(auroc) if isinstance(auroc, (int, float)) else None,
    )


def fit_assets(data: Path, out: Path, config: TrainConfig, workers: int) -> list[AssetResult]:
    """Fit every asset; results in asset order. Writes out/summary.json and out/summary.md."""
    assets = find_assets(data)
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers, len(assets)))
    config = worker_config(config, workers, usable_cores())
    config_json = config.model_dump_json(exclude_unset=True)  # unset keys stay the fit's to choose
    results: dict[str, AssetResult] = {}
    # Spawned, not forked: a fork of a process whose torch/OpenMP threads are running can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_fit_one, name, path, out, config_json) for name, path in assets.items()]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results[result.asset] = result
            log.info("[%d/%d] %s: %s", done, len(assets), result.asset, result.status)
    ordered = [results[name] for name in assets]
    (out / "summary.json").write_text(json.dumps([asdict(r) for r in ordered], indent=2) + "\n")
    (out / "summary.md").write_text(summary_table(ordered) + "\n")
    return ordered


def summary_table(results: list[AssetResult]) -> str:
    """Markdown table, one row per asset."""
    lines = [
        "| asset | status | training rows | fit s | INT8 threshold | AUROC (injected) | error |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        threshold = f"{r.threshold_int8:.4g}" if r.threshold_int8 is not None else "-"
        auroc = f"{r.auroc_int8:.3f}" if r.auroc_int8 is not None else "-"
        lines.append(
            f"| {r.asset} | {r.status} | {r.rows_train or '-'} | {r.fit_seconds} | {threshold} | {auroc} | "
            f"{(r.error or '').splitlines()[0][:120] if r.error else ''} |"
        )
    return "\n".join(lines)
