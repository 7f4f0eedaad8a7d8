"""Property-based fuzzing of the telemetry decoder: whatever arrives, it returns usable readings or names
a known reason, and never raises anything else or lets a non-finite number through."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from edge_agent.reasons import Reason
from edge_agent.telemetry import (
    Decoded,
    PayloadError,
    TimeBounds,
    _checked_reading,
    _plain_reading,
    decode_message,
)

pytestmark = pytest.mark.faults

CHANNELS = ["a", "b", "c"]
NOW = 1_800_000_000.0
BOUNDS = TimeBounds(max_age_s=3600.0, max_future_s=30.0)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e30, -1e30, 3.4028235e38, 3.5e38, 1e308, 0.0, -0.0]),
)
junk = st.one_of(st.none(), st.booleans(), st.text(max_size=12), numbers)
values = st.one_of(
    st.lists(st.one_of(numbers, junk), max_size=5),
    st.dictionaries(st.sampled_from([*CHANNELS, "d", "ts"]), st.one_of(numbers, junk), max_size=5),
    junk,
)
timestamps = st.one_of(
    st.none(),
    st.floats(min_value=NOW - 7200, max_value=NOW + 60),
    st.sampled_from(["2027-01-15T08:00:00Z", "yesterday", "", "9999-99-99", "1e999"]),
    junk,
)
mangled = st.fixed_dictionaries(
    {}, optional={"ts": timestamps, "seq": st.one_of(st.integers(), junk), "values": values}
)
plausible = st.fixed_dictionaries(  # nearly right: the shapes a real device sends, with numbers anywhere
    {
        "ts": st.floats(min_value=NOW - 4000, max_value=NOW + 60),
        "values": st.one_of(
            st.lists(numbers, min_size=3, max_size=3), st.fixed_dictionaries({c: numbers for c in CHANNELS})
        ),
    },
    optional={"seq": st.integers(min_value=0, max_value=2**40)},
)
readings = st.one_of(plausible, mangled)
columnar = st.integers(min_value=1, max_value=4).flatmap(
    lambda n: st.fixed_dictionaries(
        {"values": st.fixed_dictionaries({c: st.lists(numbers, min_size=n, max_size=n) for c in CHANNELS})},
        optional={"ts": st.lists(st.floats(min_value=NOW - 4000, max_value=NOW), min_size=n, max_size=n)},
    )
)
documents = st.one_of(readings, st.lists(st.one_of(readings, junk), max_size=6), columnar, junk)


def _check(decoded: Decoded, rows: int | None) -> None:
    for reading in decoded.readings:
        assert reading.values.shape == (len(CHANNELS),) and reading.values.dtype == np.float32
        assert np.isfinite(reading.values).all(), reading.values
        assert math.isfinite(reading.ts) and NOW - 3600 <= reading.ts <= NOW + 30
    for refusal in decoded.refused:
        assert isinstance(refusal.error.reason, Reason), refusal.error.reason
    if rows is not None:  # a batch: every reading is either kept or refused with its own index
        indices = [r.index for r in decoded.refused]
        assert len(set(indices)) == len(indices) and all(0 <= i < rows for i in indices)  # type: ignore[operator]
        assert len(decoded.readings) + len(decoded.refused) == rows


@FUZZ
@given(documents)
def test_any_json_document_decodes_to_finite_readings_or_a_named_reason(document: object) -> None:
    payload = json.dumps(document).encode()
    try:
        decoded = decode_message(payload, "dev-1", CHANNELS, NOW, bounds=BOUNDS)
    except PayloadError as err:
        assert isinstance(err.reason, Reason), err.reason
        event(f"refused: {err.reason}")
        return
    event("kept a reading" if decoded.readings else "every reading refused")
    _check(decoded, len(document) if isinstance(document, list) else None)


@FUZZ
@given(st.binary(max_size=300), st.text(max_size=20))
def test_any_bytes_from_any_device_id_are_refused_cleanly_or_decoded(payload: bytes, device: str) -> None:
    try:
        decoded = decode_message(payload, device, CHANNELS, NOW, bounds=BOUNDS)
    except PayloadError as err:
        assert isinstance(err.reason, Reason), err.reason
        return
    _check(decoded, None)


near_plain = st.fixed_dictionaries(  # what the fast path takes, with each other field allowed to go wrong
    {
        "values": st.one_of(
            st.lists(numbers, min_size=3, max_size=3), st.fixed_dictionaries({c: numbers for c in CHANNELS})
        )
    },
    optional={
        "ts": st.one_of(timestamps, st.floats(max_value=-1e-9), st.integers(max_value=-1)),
        "seq": st.one_of(st.integers(min_value=-5), junk),
    },
)


@FUZZ
@given(st.one_of(readings, near_plain))
@example({"values": [1.0, 2.0, 3.5e38]})  # beyond float32
@example({"values": [1.0, 2.0, 3.0], "seq": True})  # bool is not an integer here
@example({"values": [1.0, 2.0, 3.0], "seq": "7"})
@example({"values": {"a": 1, "b": 2.5, "c": 3}, "ts": -1})
@example({"values": {"a": 1, "b": 2.5, "c": 3}, "ts": NOW, "seq": 4})  # taken by the fast path
def test_the_fast_path_keeps_only_what_the_general_path_keeps(document: dict[str, object]) -> None:
    """Readings, single or in a list batch, first try `_plain_reading` and fall back to `_checked_reading`,
    which names every fault. The fast path must give the general path's reading or step aside (None),
    never accept what the general path refuses."""
    document = json.loads(json.dumps(document))  # what the decoder sees: parsed JSON
    fast = _plain_reading(document, "dev-1", CHANNELS, NOW)
    try:
        general = _checked_reading(document, "dev-1", CHANNELS, NOW)
    except PayloadError:
        assert fast is None
        return
    event("fast path" if fast is not None else "general path")
    if fast is not None:
        assert (fast.ts, fast.seq, fast.received_ts) == (general.ts, general.seq, general.received_ts)
        np.testing.assert_array_equal(fast.values, general.values)
        assert fast.values.dtype == general.values.dtype
