"""Turn CSV files of normal operation into clean, time-ordered series for training. No torch here.

Short gaps (missing cells, or missing rows in a regular time grid) are interpolated and reported; longer ones
are an error naming the file and line, or split the series when the config asks for that.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.errors import DataError
from edge_agent.tabular import Table, read_table
from trainer.config import DataConfig

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".csv", ".tsv", ".txt")
_GAP_FACTOR = 1.5  # a step this much longer than the median sampling interval is a gap


@dataclass(frozen=True, slots=True)
class Segment:
    """A gap-free stretch of one file."""

    source: Path
    values: npt.NDArray[np.float64]  # [rows, channels]
    first_line: int


@dataclass(slots=True)
class DataReport:
    """What cleaning did, for logs and provenance."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    interpolated_cells: int = 0
    inserted_rows: int = 0
    dropped_duplicate_rows: int = 0
    segments: int = 0

    def counts(self) -> dict[str, int]:
        """The numeric part, for the bundle's provenance."""
        return {
            "rows": self.rows,
            "interpolated_cells": self.interpolated_cells,
            "inserted_rows": self.inserted_rows,
            "dropped_duplicate_rows": self.dropped_duplicate_rows,
            "segments": self.segments,
        }


@dataclass(frozen=True, slots=True)
class TrainingData:
    """Cleaned series ready for windowing."""

    channels: list[str]
    segments: list[Segment]
    sample_period_s: float | None
    fingerprint: str
    report: DataReport


def find_data_files(path: Path) -> list[Path]:
    """One file, or the data files of a folder in name order."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
        if not files:
            raise DataError(f"{path}: folder holds no {'/'.join(DATA_SUFFIXES)} files")
        return files
    raise DataError(f"{path}: no such file or folder")


def load_training_data(path: Path, config: DataConfig) -> TrainingData:
    """Read, check, order and gap-fill every file; all files must offer the same channels."""
    report = DataReport()
    digest = hashlib.sha256()
    segments: list[Segment] = []
    channels: list[str] | None = None
    periods: list[float] = []
    for file_path in find_data_files(path):
        table = read_table(file_path, config.columns)
        if channels is None:
            channels = table.channels
            digest.update("\x1f".join(channels).encode())
        elif table.channels != channels:
            raise DataError(
                f"{file_path}: channels {table.channels} differ from the first file's {channels}; "
                "use --columns to pick common ones"
            )
        if len(table.values) == 0:
            raise DataError(f"{file_path}: header only, no data rows")
        digest.update(table.values.tobytes())
        if table.timestamps is not None:
            digest.update(table.timestamps.tobytes())
        report.files.append(str(file_path))
        report.rows += len(table.values)
        file_segments, period = _clean_table(table, config, report)
        segments.extend(file_segments)
        if period is not None:
            periods.append(period)
    assert channels is not None  # find_data_files never returns an empty list
    report.segments = len(segments)
    return TrainingData(
        channels=channels,
        segments=segments,
        sample_period_s=float(np.median(periods)) if periods else None,
        fingerprint=digest.hexdigest(),
        report=report,
    )


def _clean_table(table: Table, config: DataConfig, report: DataReport) -> tuple[list[Segment], float | None]:
    values, lines = table.values, table.line_numbers
    _reject_empty_channels(table)
    period = None
    pieces: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]] = [(values, lines)]
    if table.timestamps is not None:
        values, lines, stamps = _order_by_time(table, report)
        period, pieces = _fill_time_gaps(table.source, values, lines, stamps, config, report)
    segments = []
    for piece_values, piece_lines in pieces:
        for seg_values, seg_first in _fill_missing_cells(table, piece_values, piece_lines, config, report):
            segments.append(Segment(source=table.source, values=seg_values, first_line=seg_first))
    return segments, period


def _reject_empty_channels(table: Table) -> None:
    empty = [name for i, name in enumerate(table.channels) if np.isnan(table.values[:, i]).all()]
    if empty:
        raise DataError(f"{table.source}: channel(s) {', '.join(empty)} hold no values at all")


def _order_by_time(
    table: Table, report: DataReport
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    assert table.timestamps is not None
    order = np.argsort(table.timestamps, kind="stable")
    stamps = table.timestamps[order]
    keep = np.concatenate([[True], np.diff(stamps) > 0])  # a repeated timestamp keeps its first reading
    dropped = int((~keep).sum())
    if dropped:
        report.dropped_duplicate_rows += dropped
        log.warning("%s: %d rows repeat an earlier timestamp and were dropped", table.source, dropped)
    return table.values[order][keep], table.line_numbers[order][keep], stamps[keep]


def _fill_time_gaps(
    source: Path,
    values: npt.NDArray[np.float64],
    lines: npt.NDArray[np.int64],
    stamps: npt.NDArray[np.float64],
    config: DataConfig,
    report: DataReport,
) -> tuple[float | None, list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]]]:
    """Insert NaN rows for short time gaps (filled later); error or split on long ones."""
    if len(stamps) < 3:
        return None, [(values, lines)]
    steps = np.diff(stamps)
    period = float(np.median(steps))
    missing = np.where(steps > _GAP_FACTOR * period, np.rint(steps / period).astype(np.int64) - 1, 0)
    pieces: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]] = []
    out_values: list[npt.NDArray[np.float64]] = [values[:1]]
    out_lines: list[npt.NDArray[np.int64]] = [lines[:1]]
    for i, gap in enumerate(missing):
        if gap > config.max_gap_rows:
            if config.on_long_gap == "error":
                raise DataError(
                    f"{source}:{lines[i + 1]}: {gap} readings missing before this row "
                    f"(more than max_gap_rows={config.max_gap_rows}); fill them or set on_long_gap: split"
                )
            pieces.append((np.concatenate(out_values), np.concatenate(out_lines)))
            out_values, out_lines = [], []
        elif gap > 0:
            report.inserted_rows += int(gap)
            out_values.append(np.full((gap, values.shape[1]), np.nan))
            out_lines.append(np.full(gap, lines[i + 1], dtype=np.int64))
        out_values.append(values[i + 1 : i + 2])
        out_lines.append(lines[i + 1 : i + 2])
    pieces.append((np.concatenate(out_values), np.concatenate(out_lines)))
    return period, pieces


def _fill_missing_cells(
    table: Table,
    values: npt.NDArray[np.float64],
    lines: npt.NDArray[np.int64],
    config: DataConfig,
    report: DataReport,
) -> list[tuple[npt.NDArray[np.float64], int]]:
    """Linear interpolation over short NaN runs per channel; long runs are an error or a split point."""
    values = values.copy()
    cuts: set[int] = set()
    for channel in range(values.shape[1]):
        column = values[:, channel]
        for start, stop in _nan_runs(column):
            length = stop - start
            if length > config.max_gap_rows:
                if config.on_long_gap == "error":
                    raise DataError(
                        f"{table.source}:{lines[start]}: channel {table.channels[channel]!r} missing for "
                        f"{length} rows (more than max_gap_rows={config.max_gap_rows})"
                    )
                cuts.update(range(start, stop))
                continue
            report.interpolated_cells += length
            column[start:stop] = _interpolate(column, start, stop)
    if not cuts:
        return [(values, int(lines[0]))]
    keep = np.ones(len(values), dtype=bool)
    keep[list(cuts)] = False
    return [(values[a:b], int(lines[a])) for a, b in _true_runs(keep)]


def _interpolate(column: npt.NDArray[np.float64], start: int, stop: int) -> npt.NDArray[np.float64]:
    before = column[start - 1] if start > 0 else None
    after = column[stop] if stop < len(column) else None
    if before is None and after is None:
        raise DataError("channel has no values")  # unreachable: empty channels are rejected first
    if before is None:
        return np.full(stop - start, after)
    if after is None:
        return np.full(stop - start, before)
    fractions = np.arange(1, stop - start + 1) / (stop - start + 1)
    return np.asarray(before + (after - before) * fractions, dtype=np.float64)


def _nan_runs(column: npt.NDArray[np.float64]) -> list[tuple[int, int]]:
    return _true_runs(np.isnan(column))


def _true_runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=False)]
