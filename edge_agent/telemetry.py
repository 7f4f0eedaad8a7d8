"""Decode telemetry payloads into Readings, strictly: every rejection has a named reason. Pure.

Format (DESIGN.md): {"ts": <epoch s or ISO 8601>, "seq": <optional int>, "values": {channel: number}} or
"values": [..] in bundle channel order. Unknown top-level keys are ignored; NaN/Infinity tokens are not JSON.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import orjson

from edge_agent.errors import EdgeAgentError
from edge_agent.tabular import parse_timestamp

DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # matched in full: "$" would accept a trailing newline

# Rejection reasons: stable names, used as stats counter keys and on the rejected topic.
TOO_LARGE = "too_large"
BAD_JSON = "bad_json"
NOT_OBJECT = "not_object"
BAD_DEVICE = "bad_device"
BAD_TS = "bad_ts"
BAD_SEQ = "bad_seq"
MISSING_VALUES = "missing_values"
MISSING_CHANNEL = "missing_channel"
EXTRA_CHANNEL = "extra_channel"
NON_NUMERIC = "non_numeric"
WRONG_CHANNEL_COUNT = "wrong_channel_count"


class PayloadError(EdgeAgentError):
    """A reading that cannot be used; `reason` is one of the names above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
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
        raise PayloadError(BAD_DEVICE, f"device id {device[:80]!r} does not match {DEVICE_ID.pattern}")
    return device


def decode_telemetry(
    payload: bytes, device: str, channels: list[str], received_ts: float, max_bytes: int = 16384
) -> Reading:
    """Parse and check one payload; `received_ts` stands in for a missing "ts"."""
    check_device_id(device)
    if len(payload) > max_bytes:
        raise PayloadError(TOO_LARGE, f"{len(payload)} bytes > {max_bytes}")
    try:
        # orjson is strict RFC 8259: NaN/Infinity tokens, numbers overflowing a double, invalid UTF-8 and
        # trailing content are all errors; it is also several times faster than the json module.
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        raise PayloadError(BAD_JSON, str(err)[:120]) from None
    if not isinstance(document, dict):
        raise PayloadError(NOT_OBJECT, f"expected a JSON object, got {type(document).__name__}")
    return Reading(
        device=device,
        ts=_timestamp(document.get("ts"), received_ts),
        values=_values(document.get("values"), channels),
        seq=_sequence(document.get("seq")),
        received_ts=received_ts,
    )


def _timestamp(raw: object, received_ts: float) -> float:
    if raw is None:
        return received_ts
    if isinstance(raw, bool):
        raise PayloadError(BAD_TS, "ts is a boolean")
    if isinstance(raw, (int, float)):
        value = float(raw)
        if not math.isfinite(value) or value < 0:
            raise PayloadError(BAD_TS, f"ts {raw!r} is not a time")
        return value
    if isinstance(raw, str):
        try:
            return parse_timestamp(raw)
        except ValueError:
            raise PayloadError(BAD_TS, f"ts {raw[:40]!r} is not epoch seconds or ISO 8601") from None
    raise PayloadError(BAD_TS, f"ts of type {type(raw).__name__}")


def _sequence(raw: object) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise PayloadError(BAD_SEQ, f"seq {str(raw)[:40]!r} is not an integer")
    return raw


def _number(raw: object, channel: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise PayloadError(NON_NUMERIC, f"channel {channel!r} holds {str(raw)[:40]!r}")
    value = float(raw)
    if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:  # windows are float32
        raise PayloadError(NON_NUMERIC, f"channel {channel!r} is not a finite float32")
    return value


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_PLAIN_NUMBERS = frozenset((int, float))  # exact types: bool is a subclass of int and must not pass


def _values(raw: object, channels: list[str]) -> npt.NDArray[np.float32]:
    if isinstance(raw, list):
        if len(raw) != len(channels):
            raise PayloadError(WRONG_CHANNEL_COUNT, f"{len(raw)} values for {len(channels)} channels")
        ordered = raw
    elif isinstance(raw, dict):
        missing = [c for c in channels if c not in raw]
        if missing:
            raise PayloadError(MISSING_CHANNEL, f"missing {', '.join(missing[:5])}")
        if len(raw) != len(channels):
            extra = [str(k) for k in raw if k not in channels]
            raise PayloadError(EXTRA_CHANNEL, f"unknown {', '.join(e[:40] for e in extra[:5])}")
        ordered = [raw[c] for c in channels]
    else:
        raise PayloadError(MISSING_VALUES, "no 'values' object or list")
    # Fast path for the common case; the per-value walk below names the offending channel otherwise.
    # Comparisons with NaN are false, so NaN and out-of-float32-range values both take the slow path.
    if _PLAIN_NUMBERS.issuperset(map(type, ordered)) and (
        min(ordered) >= -_FLOAT32_MAX and max(ordered) <= _FLOAT32_MAX  # type: ignore[type-var]
    ):
        return np.array(ordered, dtype=np.float32)
    return np.array([_number(v, c) for v, c in zip(ordered, channels, strict=True)], dtype=np.float32)
