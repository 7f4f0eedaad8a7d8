"""Read sensor CSV files as they come from the field: any common separator, header or not, a timestamp column.

Shared by the trainer (`edge-trainer fit`) and the agent's offline scoring, so both see the same channels in
the same order from the same file. Pure Python plus numpy: no pandas on the gateway.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.errors import DataError

log = logging.getLogger(__name__)

TIMESTAMP_NAMES = {"timestamp", "time", "ts", "datetime", "date", "date_time", "epoch", "time_s"}
MISSING_TOKENS = {"", "nan", "na", "n/a", "null", "none", "-"}
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Table:
    """Numeric channels of one CSV file, in file order."""

    source: Path
    channels: list[str]
    values: npt.NDArray[np.float64]  # [rows, channels]; NaN where a cell was empty
    timestamps: npt.NDArray[np.float64] | None  # [rows] epoch seconds, or None without a timestamp column
    line_numbers: npt.NDArray[np.int64]  # [rows] 1-based line in the file, for error messages
    timestamp_column: str | None
    left_out: tuple[str, ...] = ()  # numeric columns the caller's `columns` did not ask for (labels, ids)


def parse_timestamp(text: str) -> float:
    """Epoch seconds from a number or an ISO 8601 string; naive times are taken as UTC."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"timestamp {text!r} is not finite")
        return value
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read 'Z'
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def read_table(path: Path, columns: list[str] | None = None) -> Table:
    """Read one CSV file; `columns` picks channels by name (or by `chN` for files without a header)."""
    rows, line_numbers = _read_rows(path)
    header, rows, line_numbers = _split_header(path, rows, line_numbers)
    width = len(header)
    for row, line in zip(rows, line_numbers, strict=False):
        if len(row) != width:
            raise DataError(f"{path}:{line}: {len(row)} fields, expected {width} like the first row")
    by_column: list[tuple[str, ...]] = list(zip(*rows, strict=False)) if rows else [() for _ in header]
    timestamp_index = _find_timestamp_column(header, by_column)
    numeric: dict[str, npt.NDArray[np.float64]] = {}
    for index, name in enumerate(header):
        if index == timestamp_index:
            continue
        parsed = _parse_numeric_column(path, name, by_column[index], line_numbers)
        if parsed is None:
            log.info("%s: column %r is not numeric, left out of the channels", path, name)
            continue
        numeric[name] = parsed
    chosen = _choose_channels(path, list(numeric), columns)
    values = np.stack([numeric[name] for name in chosen], axis=1) if rows else np.zeros((0, len(chosen)))
    timestamps = None
    if timestamp_index is not None:
        timestamps = _parse_timestamp_column(path, by_column[timestamp_index], line_numbers)
    return Table(
        source=path,
        channels=chosen,
        values=values,
        timestamps=timestamps,
        line_numbers=np.asarray(line_numbers, dtype=np.int64),
        timestamp_column=header[timestamp_index] if timestamp_index is not None else None,
        left_out=tuple(name for name in numeric if name not in chosen),
    )


def _read_rows(path: Path) -> tuple[list[list[str]], list[int]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read as UTF-8 text ({err})") from None
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    delimiter = _sniff_delimiter(text[:_SNIFF_BYTES])
    rows: list[list[str]] = []
    line_numbers: list[int] = []
    for line_number, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1):
        if not row or all(not field.strip() for field in row):
            continue
        rows.append([field.strip() for field in row])
        line_numbers.append(line_number)
    return rows, line_numbers


def _sniff_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        # One-column files, or samples too regular for the sniffer: count the candidates instead.
        first = sample.splitlines()[0] if sample else ""
        counts = {sep: first.count(sep) for sep in (",", ";", "\t", "|")}
        best = max(counts, key=lambda sep: counts[sep])
        return best if counts[best] else ","


def _looks_like_value(field: str) -> bool:
    if field.lower() in MISSING_TOKENS:
        return True
    try:
        float(field)
    except ValueError:
        pass
    else:
        return True
    try:
        parse_timestamp(field)
    except ValueError:
        return False
    return True


def _split_header(
    path: Path, rows: list[list[str]], lines: list[int]
) -> tuple[list[str], list[list[str]], list[int]]:
    first = rows[0]
    if all(_looks_like_value(field) for field in first):
        # No header row (SMD's files): channels are named ch1..chN, like SMD's 1-based column numbers.
        return [f"ch{i}" for i in range(1, len(first) + 1)], rows, lines
    header = [name or f"ch{i}" for i, name in enumerate(first, start=1)]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise DataError(f"{path}: header names repeated: {', '.join(duplicates)}")
    return header, rows[1:], lines[1:]


def _find_timestamp_column(header: list[str], by_column: list[tuple[str, ...]]) -> int | None:
    for index, name in enumerate(header):
        if name.lower() in TIMESTAMP_NAMES:
            return index
    for index, column in enumerate(by_column):
        sample = next((field for field in column if field.lower() not in MISSING_TOKENS), None)
        if sample is None:
            continue
        try:
            float(sample)
        except ValueError:
            try:
                parse_timestamp(sample)
            except ValueError:
                continue
            return index
    return None


def _parse_numeric_column(
    path: Path, name: str, column: tuple[str, ...], lines: list[int]
) -> npt.NDArray[np.float64] | None:
    cleaned = ["nan" if field.lower() in MISSING_TOKENS else field for field in column]
    try:
        values = np.array(cleaned, dtype=np.float64)
    except ValueError:
        bad = [(i, field) for i, field in enumerate(cleaned) if not _is_float(field)]
        if len(bad) == len(cleaned) or all(field == "nan" for field in cleaned if _is_float(field)):
            return None  # a text column (a label, a status): not a channel
        row, field = bad[0]
        raise DataError(f"{path}:{lines[row]}: column {name!r} holds {field!r}, not a number") from None
    infinite = np.flatnonzero(np.isinf(values))
    if infinite.size:
        raise DataError(f"{path}:{lines[int(infinite[0])]}: column {name!r} holds an infinite value")
    return values


def _is_float(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _parse_timestamp_column(path: Path, column: tuple[str, ...], lines: list[int]) -> npt.NDArray[np.float64]:
    stamps = np.empty(len(column), dtype=np.float64)
    for i, field in enumerate(column):
        try:
            stamps[i] = parse_timestamp(field)
        except ValueError:
            raise DataError(
                f"{path}:{lines[i]}: timestamp {field!r} is not a number or ISO 8601 time"
            ) from None
    return stamps


def _choose_channels(path: Path, available: list[str], wanted: list[str] | None) -> list[str]:
    if not available:
        raise DataError(f"{path}: no numeric column to use as a channel")
    if not wanted:
        return available
    missing = [name for name in wanted if name not in available]
    if missing:
        raise DataError(
            f"{path}: column(s) {', '.join(missing)} not found among numeric columns {', '.join(available)}"
        )
    return list(wanted)
