"""`edge-trainer synth`: continuous synthetic streams from a bundle's generator, in raw units, seeded.

The stream is the simulator's (edge_agent.simulator.stream): windows chosen to continue each other and
cross-faded, so a file of any length has no seams. Writing is atomic: a temporary file beside the target,
renamed into place, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.bundle import load_bundle
from edge_agent.operating_range import OperatingRange
from edge_agent.simulator.stream import TRUNCATION, DeviceStream, Generator
from trainer.errors import TrainerError


def synthesize(
    bundle_dir: Path, rows: int, seed: int, truncation: float = TRUNCATION, start_ts: float | None = None
) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float32]]:
    """(channels, timestamps [rows], values [rows, channels]) from the bundle's generator."""
    if rows <= 0:
        raise TrainerError(f"--rows {rows}: must be a positive number of rows")
    if not 0 < truncation <= 2:
        raise TrainerError(f"--truncation {truncation}: must lie in (0, 2]")
    bundle = load_bundle(bundle_dir)
    accepted = OperatingRange(bundle.manifest)  # rows the agent would call out of range are mirrored back
    stream = DeviceStream(
        Generator(bundle),
        seed=seed,
        variation=0.0,
        truncation=truncation,
        bounds=(accepted.low, accepted.high),
    )
    values = stream.rows(rows)
    period = bundle.manifest.sample_period_s or 1.0
    start = time.time() if start_ts is None else start_ts
    timestamps = start + period * np.arange(rows, dtype=np.float64)
    return list(bundle.manifest.channels), timestamps, values


def write_synthetic(
    path: Path, channels: list[str], timestamps: npt.NDArray[np.float64], values: npt.NDArray[np.float32]
) -> Path:
    """CSV (or Parquet for a .parquet path, when pyarrow is installed), written atomically."""
    folder = path.parent if str(path.parent) else Path()
    if not folder.is_dir():
        raise TrainerError(f"--out {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise TrainerError(f"--out {path}: folder {folder} is not writable")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    os.close(handle)
    try:
        if path.suffix == ".parquet":
            _write_parquet(Path(temporary), channels, timestamps, values)
        else:
            _write_csv(Path(temporary), channels, timestamps, values)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _write_csv(
    path: Path, channels: list[str], timestamps: npt.NDArray[np.float64], values: npt.NDArray[np.float32]
) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["timestamp", *channels])
        for ts, row in zip(timestamps, values, strict=True):
            writer.writerow([f"{ts:.3f}", *(f"{v:.6g}" for v in row)])


def _write_parquet(
    path: Path, channels: list[str], timestamps: npt.NDArray[np.float64], values: npt.NDArray[np.float32]
) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise TrainerError("Parquet output needs pyarrow (pip install pyarrow); or write .csv") from None
    columns = {"timestamp": timestamps, **{name: values[:, i] for i, name in enumerate(channels)}}
    pq.write_table(pa.table(columns), path)
