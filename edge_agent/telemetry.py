"""Decode telemetry payloads into Readings, strictly: every rejection has a named reason. Pure.

Format (DESIGN.md): {"ts": <epoch s or ISO 8601>, "seq": <optional int>, "values": {channel: number}} or
"values": [..] in bundle channel order. Unknown top-level keys are ignored; NaN/Infinity tokens are not JSON.

Batches (README, "Batched telemetry"): one message may carry many readings of its device, either as a JSON
list of such objects, or columnar, {"ts": [..], "seq": [..], "values": {channel: [..]}}. Each reading is
checked on its own: a bad one is refused with its index, the others are used.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from edge_agent.errors import EdgeAgentError
from edge_agent.reasons import Reason
from edge_agent.tabular import parse_timestamp

DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # matched in full: "$" would accept a trailing newline


class PayloadError(EdgeAgentError):
    """A reading that cannot be used; `reason` says why, by its stable name."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)  # not frozen: one per reading, and a frozen __init__ costs 4x this one
class Reading:
    """One device's values at one time, in bundle channel order."""

    device: str
    ts: float  # epoch seconds
    values: npt.NDArray[np.float32]  # [channels]
    seq: int | None = None
    received_ts: float = 0.0  # our clock when the message arrived, for latency


def check_device_id(device: str) -> str:
    """Device ids become topic levels and log fields: only a safe alphabet."""
    if not DEVICE_ID.fullmatch(device):
        raise PayloadError(Reason.BAD_DEVICE, f"device id {device[:80]!r} does not match {DEVICE_ID.pattern}")
    return device


def decode_telemetry(
    payload: bytes, device: str, channels: list[str], received_ts: float, max_bytes: int = 262144
) -> Reading:
    """Parse and check one payload; `received_ts` stands in for a missing "ts"."""
    document = _parse(payload, device, max_bytes)
    if not isinstance(document, dict):
        raise PayloadError(Reason.NOT_OBJECT, f"expected a JSON object, got {type(document).__name__}")
    return _reading(document, device, channels, received_ts)


def _parse(payload: bytes, device: str, max_bytes: int) -> object:
    """The whole-message checks every form shares: device id, size, strict JSON."""
    check_device_id(device)
    if len(payload) > max_bytes:
        raise PayloadError(Reason.TOO_LARGE, f"{len(payload)} bytes > {max_bytes}")
    try:
        # orjson is strict RFC 8259: NaN/Infinity tokens, numbers overflowing a double, invalid UTF-8 and
        # trailing content are all errors; it is also several times faster than the json module.
        return orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        raise PayloadError(Reason.BAD_JSON, str(err)[:120]) from None


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """How old, and how far ahead of our clock, a reading's own timestamp may be."""

    max_age_s: float = math.inf
    max_future_s: float = math.inf

    def check(self, ts: float, received_ts: float) -> None:
        if ts > received_ts + self.max_future_s:
            raise PayloadError(Reason.FUTURE, f"ts {ts:.0f} is {ts - received_ts:.0f} s ahead")
        if ts < received_ts - self.max_age_s:
            raise PayloadError(Reason.STALE, f"ts {ts:.0f} is {received_ts - ts:.0f} s old")

    def holds(self, times: npt.NDArray[np.float64], received_ts: float) -> bool:
        """Whether every timestamp lies within the bounds."""
        return bool(
            times.max() <= received_ts + self.max_future_s and times.min() >= received_ts - self.max_age_s
        )


ANY_TIME = TimeBounds()


@dataclass(frozen=True, slots=True)
class Refusal:
    """One reading of a message that could not be used: its index in the message (None for a single
    reading) and why."""

    index: int | None
    error: PayloadError


@dataclass(slots=True)  # not frozen: one per message, and a frozen __init__ costs 4x this one
class Decoded:
    """A message's usable readings, in message order, and the refused ones."""

    readings: list[Reading]
    refused: list[Refusal]


def decode_message(
    payload: bytes,
    device: str,
    channels: list[str],
    received_ts: float,
    max_bytes: int = 262144,
    max_readings: int = 1000,
    bounds: TimeBounds = ANY_TIME,
) -> Decoded:
    """One reading or a batch. A whole-message fault (size, JSON, shape) and a single reading's fault raise
    PayloadError; a bad reading inside a batch, a timestamp outside `bounds` included, is refused with its
    index in the message and the rest are kept."""
    document = _parse(payload, device, max_bytes)
    if isinstance(document, dict):
        single = _plain_reading(document, device, channels, received_ts)  # the common case, first
        if single is None and not _is_columnar(document):
            single = _checked_reading(document, device, channels, received_ts)
        if single is not None:
            bounds.check(single.ts, received_ts)
            return Decoded([single], [])
        fast = _clean_columns(document, device, channels, received_ts, max_readings, bounds)
        if fast is not None:
            return fast
    rows = _columnar_rows(document) if isinstance(document, dict) else document
    if not isinstance(rows, list):
        raise PayloadError(
            Reason.NOT_OBJECT, f"expected a JSON object or list, got {type(document).__name__}"
        )
    if not rows:
        raise PayloadError(Reason.NOT_OBJECT, "an empty batch: expected a reading or a list of them")
    if len(rows) > max_readings:
        raise PayloadError(Reason.TOO_MANY_READINGS, f"{len(rows)} readings > {max_readings}")
    readings, refused = [], []
    for index, row in enumerate(rows):
        try:
            if not isinstance(row, dict):
                raise PayloadError(Reason.NOT_OBJECT, f"expected a reading object, got {type(row).__name__}")
            reading = _reading(row, device, channels, received_ts)
            bounds.check(reading.ts, received_ts)
            readings.append(reading)
        except PayloadError as err:
            refused.append(Refusal(index, err))
    return Decoded(readings, refused)


def _reading(document: dict[str, object], device: str, channels: list[str], received_ts: float) -> Reading:
    """One reading object: the one-pass check where it applies, else the check that names the fault."""
    return _plain_reading(document, device, channels, received_ts) or _checked_reading(
        document, device, channels, received_ts
    )


def _checked_reading(
    document: dict[str, object], device: str, channels: list[str], received_ts: float
) -> Reading:
    """Field by field: PayloadError names whatever is wrong."""
    return Reading(
        device=device,
        ts=_timestamp(document.get("ts"), received_ts),
        values=_values(document.get("values"), channels),
        seq=_sequence(document.get("seq")),
        received_ts=received_ts,
    )


def _plain_reading(
    document: dict[str, object], device: str, channels: list[str], received_ts: float
) -> Reading | None:
    """The common single reading, checked in one pass: exactly the bundle's channels, plain numbers within
    float32, a numeric timestamp (or none) and an integer sequence number (or none). None sends anything
    else, batches included, down the paths that tell them apart and name faults. Why: a message per
    reading is the commonest telemetry, and this path takes about half the general one's time
    (benchmarks/README.md, "Round 31: single readings in one pass")."""
    values = document.get("values")
    if type(values) is dict:
        if len(values) != len(channels):
            return None
        try:
            ordered = [values[channel] for channel in channels]
        except KeyError:
            return None
    elif type(values) is list and len(values) == len(channels):
        ordered = values
    else:
        return None
    if not _PLAIN_NUMBERS.issuperset(map(type, ordered)) or not (
        min(ordered) >= -FLOAT32_MAX and max(ordered) <= FLOAT32_MAX  # type: ignore[type-var]
    ):
        return None
    ts, seq = document.get("ts", received_ts), document.get("seq")
    if type(ts) not in _PLAIN_NUMBERS or ts < 0 or (seq is not None and type(seq) is not int):  # type: ignore[operator]
        return None
    return Reading(device, float(ts), np.array(ordered, dtype=np.float32), seq, received_ts)  # type: ignore[arg-type]


def _is_columnar(document: dict[str, object]) -> bool:
    values = document.get("values")
    return isinstance(document.get("ts"), list) or (
        isinstance(values, dict) and any(isinstance(column, list) for column in values.values())
    )


def _clean_columns(
    document: dict[str, object],
    device: str,
    channels: list[str],
    received_ts: float,
    max_readings: int,
    bounds: TimeBounds,
) -> Decoded | None:
    """The common columnar batch, checked as whole arrays: every channel present, plain numbers within
    float32, numeric timestamps. None sends anything else down the per-reading path, which names faults."""
    values, ts, seq = document.get("values"), document.get("ts"), document.get("seq")
    if not isinstance(values, dict) or len(values) != len(channels):
        return None
    columns = [values.get(channel) for channel in channels]
    if not all(isinstance(column, list) for column in columns):
        return None
    count = len(columns[0])  # type: ignore[arg-type]
    extras = [column for column in (ts, seq) if column is not None]
    if not 0 < count <= max_readings or any(
        not isinstance(column, list) or len(column) != count for column in (*columns, *extras)
    ):
        return None
    if not all(_PLAIN_NUMBERS.issuperset(map(type, column)) for column in columns):  # type: ignore[arg-type]
        return None
    if isinstance(seq, list) and not all(type(item) is int for item in seq):
        return None
    if isinstance(ts, list) and not _PLAIN_NUMBERS.issuperset(map(type, ts)):
        return None
    table = np.array(columns, dtype=np.float64)
    if not (np.isfinite(table).all() and np.abs(table).max() <= FLOAT32_MAX):
        return None
    times = np.full(count, received_ts) if ts is None else np.array(ts, dtype=np.float64)
    if not (np.isfinite(times).all() and times.min() >= 0 and bounds.holds(times, received_ts)):
        return None
    rows = np.ascontiguousarray(table.T, dtype=np.float32)
    sequence: list[int | None] = list(seq) if seq is not None else [None] * count  # type: ignore[call-overload]
    readings = [Reading(device, float(times[i]), rows[i], sequence[i], received_ts) for i in range(count)]
    return Decoded(readings, [])


def _columnar_rows(document: dict[str, object]) -> list[dict[str, object]]:
    """{"ts": [..], "seq": [..], "values": {channel: [..]}} as one reading object per row."""
    values = document.get("values")
    if not isinstance(values, dict) or not all(isinstance(column, list) for column in values.values()):
        raise PayloadError(Reason.MISSING_VALUES, "a columnar batch needs 'values': {channel: [..]}")
    extras: dict[str, list[object]] = {}
    for key in ("ts", "seq"):
        column = document.get(key)
        if column is not None:
            if not isinstance(column, list):
                raise PayloadError(Reason.RAGGED_COLUMNS, f"'{key}' must be a list in a columnar batch")
            extras[key] = column
    lengths = {len(column) for column in (*values.values(), *extras.values())}
    if len(lengths) > 1:
        raise PayloadError(Reason.RAGGED_COLUMNS, f"columns of different lengths: {sorted(lengths)[:5]}")
    count = lengths.pop() if lengths else 0
    return [
        {
            "values": {name: column[i] for name, column in values.items()},
            **{key: column[i] for key, column in extras.items()},
        }
        for i in range(count)
    ]


def _timestamp(raw: object, received_ts: float) -> float:
    if raw is None:
        return received_ts
    if isinstance(raw, bool):
        raise PayloadError(Reason.BAD_TS, "ts is a boolean")
    if isinstance(raw, (int, float)):
        value = float(raw)
        if not math.isfinite(value) or value < 0:
            raise PayloadError(Reason.BAD_TS, f"ts {raw!r} is not a time")
        return value
    if isinstance(raw, str):
        try:
            return parse_timestamp(raw)
        except ValueError:
            raise PayloadError(Reason.BAD_TS, f"ts {raw[:40]!r} is not epoch seconds or ISO 8601") from None
    raise PayloadError(Reason.BAD_TS, f"ts of type {type(raw).__name__}")


def _sequence(raw: object) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise PayloadError(Reason.BAD_SEQ, f"seq {str(raw)[:40]!r} is not an integer")
    return raw


def checked_number(raw: object, channel: str) -> float:
    """A channel's value as a float the float32 windows can hold; PayloadError (non_numeric) otherwise."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise PayloadError(Reason.NON_NUMERIC, f"channel {channel!r} holds {str(raw)[:40]!r}")
    value = float(raw)
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:  # windows are float32
        raise PayloadError(Reason.NON_NUMERIC, f"channel {channel!r} is not a finite float32")
    return value


FLOAT32_MAX = float(np.finfo(np.float32).max)  # windows are float32
_PLAIN_NUMBERS = frozenset((int, float))  # exact types: bool is a subclass of int and must not pass


def _values(raw: object, channels: list[str]) -> npt.NDArray[np.float32]:
    if isinstance(raw, list):
        if len(raw) != len(channels):
            raise PayloadError(Reason.WRONG_CHANNEL_COUNT, f"{len(raw)} values for {len(channels)} channels")
        ordered = raw
    elif isinstance(raw, dict):
        missing = [c for c in channels if c not in raw]
        if missing:
            raise PayloadError(Reason.MISSING_CHANNEL, f"missing {', '.join(missing[:5])}")
        if len(raw) != len(channels):
            extra = [str(k) for k in raw if k not in channels]
            raise PayloadError(Reason.EXTRA_CHANNEL, f"unknown {', '.join(e[:40] for e in extra[:5])}")
        ordered = [raw[c] for c in channels]
    else:
        raise PayloadError(Reason.MISSING_VALUES, "no 'values' object or list")
    # Fast path for the common case; the per-value walk below names the offending channel otherwise.
    # Comparisons with NaN are false, so NaN and out-of-float32-range values both take the slow path.
    if _PLAIN_NUMBERS.issuperset(map(type, ordered)) and (
        min(ordered) >= -FLOAT32_MAX and max(ordered) <= FLOAT32_MAX  # type: ignore[type-var]
    ):
        return np.array(ordered, dtype=np.float32)
    return np.array([checked_number(v, c) for v, c in zip(ordered, channels, strict=True)], dtype=np.float32)
