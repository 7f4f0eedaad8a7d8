"""Payload decoding: every malformed reading is refused with its own reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_agent import telemetry as t
from edge_agent.reasons import Reason
from edge_agent.telemetry import PayloadError, decode_telemetry

CHANNELS = ["temp", "rpm"]


def _decode(payload: object, device: str = "pump-1", raw: bytes | None = None) -> t.Reading:
    data = raw if raw is not None else json.dumps(payload).encode()
    return decode_telemetry(data, device, CHANNELS, received_ts=1000.0, max_bytes=256)


def test_object_and_list_forms_give_bundle_order() -> None:
    by_name = _decode({"ts": 5, "seq": 7, "values": {"rpm": 1500, "temp": 20.5}, "note": "ignored"})
    by_order = _decode({"ts": "1970-01-01T00:00:05Z", "values": [20.5, 1500]})
    np.testing.assert_allclose(by_name.values, [20.5, 1500])
    np.testing.assert_allclose(by_order.values, by_name.values)
    assert by_name.ts == by_order.ts == 5.0 and by_name.seq == 7 and by_order.seq is None


def test_missing_ts_takes_the_receive_time() -> None:
    assert _decode({"values": [1, 2]}).ts == 1000.0


@pytest.mark.parametrize(
    ("payload", "raw", "reason"),
    [
        (None, b'{"values": [NaN, 1]}', Reason.BAD_JSON),
        (None, b'{"values": [Infinity, 1]}', Reason.BAD_JSON),
        (None, b"{not json", Reason.BAD_JSON),
        (None, b"\xff\xfe", Reason.BAD_JSON),
        (None, b'{"values": [1, 2], "pad": "' + b"x" * 300 + b'"}', Reason.TOO_LARGE),
        ([1, 2], None, Reason.NOT_OBJECT),
        ({"ts": 1}, None, Reason.MISSING_VALUES),
        ({"values": {"temp": 1}}, None, Reason.MISSING_CHANNEL),
        ({"values": {"temp": 1, "rpm": 2, "volts": 3}}, None, Reason.EXTRA_CHANNEL),
        ({"values": {"temp": "hot", "rpm": 2}}, None, Reason.NON_NUMERIC),
        ({"values": {"temp": True, "rpm": 2}}, None, Reason.NON_NUMERIC),
        ({"values": {"temp": None, "rpm": 2}}, None, Reason.NON_NUMERIC),
        (None, b'{"values": [1e999, 2]}', Reason.BAD_JSON),  # overflows a double: not a JSON number we accept
        (None, b'{"values": [1, 2]} trailing', Reason.BAD_JSON),
        (None, b'{"values": [1e39, 2]}', Reason.NON_NUMERIC),
        ({"values": [1, 2, 3]}, None, Reason.WRONG_CHANNEL_COUNT),
        ({"ts": "yesterday", "values": [1, 2]}, None, Reason.BAD_TS),
        ({"ts": -5, "values": [1, 2]}, None, Reason.BAD_TS),
        ({"seq": "7", "values": [1, 2]}, None, Reason.BAD_SEQ),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(payload: object, raw: bytes | None, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        _decode(payload, raw=raw)
    assert caught.value.reason == reason


@pytest.mark.parametrize("device", ["", "a/b", "#", "x" * 65, "pump 1", "dev+", "dev1\n", "\ndev1"])
def test_unsafe_device_ids_are_refused(device: str) -> None:
    with pytest.raises(PayloadError) as caught:
        _decode({"values": [1, 2]}, device=device)
    assert caught.value.reason == Reason.BAD_DEVICE


def _batch(payload: object, max_readings: int = 10) -> t.Decoded:
    data = json.dumps(payload).encode()
    return t.decode_message(data, "pump-1", CHANNELS, received_ts=1000.0, max_readings=max_readings)


def test_a_single_reading_is_a_batch_of_one() -> None:
    decoded = _batch({"ts": 5, "values": {"temp": 1, "rpm": 2}})
    assert [r.ts for r in decoded.readings] == [5.0] and decoded.refused == []


def test_a_list_batch_keeps_the_good_readings_and_names_the_bad_ones_by_index() -> None:
    decoded = _batch(
        [
            {"ts": 1, "seq": 1, "values": {"temp": 1, "rpm": 2}},
            {"ts": 2, "values": {"temp": "hot", "rpm": 2}},
            "not a reading",
            {"ts": 4, "values": [3, 4]},
        ]
    )
    assert [r.ts for r in decoded.readings] == [1.0, 4.0]
    np.testing.assert_allclose(decoded.readings[1].values, [3, 4])
    assert decoded.readings[0].seq == 1
    assert [(f.index, f.error.reason) for f in decoded.refused] == [
        (1, Reason.NON_NUMERIC),
        (2, Reason.NOT_OBJECT),
    ]


def test_a_columnar_batch_gives_one_reading_per_row_in_bundle_order() -> None:
    decoded = _batch(
        {"ts": [1, 2, 3], "seq": [7, 8, 9], "values": {"rpm": [10, 20, 30], "temp": [1, 2, None]}}
    )
    assert [r.ts for r in decoded.readings] == [1.0, 2.0]
    np.testing.assert_allclose([r.values for r in decoded.readings], [[1, 10], [2, 20]])
    assert [r.seq for r in decoded.readings] == [7, 8]
    assert [(f.index, f.error.reason) for f in decoded.refused] == [(2, Reason.NON_NUMERIC)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"ts": [1, 2], "values": {"temp": [1, 2], "rpm": [1]}}, Reason.RAGGED_COLUMNS),
        ({"ts": [1, 2], "values": [1, 2]}, Reason.MISSING_VALUES),
        ([{"values": [1, 2]}] * 11, Reason.TOO_MANY_READINGS),
        (7, Reason.NOT_OBJECT),
        ([], Reason.NOT_OBJECT),
        ({"ts": [], "values": {"temp": [], "rpm": []}}, Reason.NOT_OBJECT),
    ],
)
def test_a_malformed_batch_is_refused_whole(payload: object, reason: str) -> None:
    with pytest.raises(PayloadError) as caught:
        _batch(payload)
    assert caught.value.reason == reason


def test_clean_columns_decode_exactly_as_the_same_readings_listed() -> None:
    rng = np.random.default_rng(3)
    temp, rpm = rng.normal(20, 5, 50).tolist(), rng.normal(1500, 100, 50).tolist()
    columnar = _batch(
        {"ts": list(range(50)), "seq": list(range(50)), "values": {"rpm": rpm, "temp": temp}}, 100
    )
    listed = _batch(
        [{"ts": i, "seq": i, "values": {"temp": temp[i], "rpm": rpm[i]}} for i in range(50)], max_readings=100
    )
    assert [(r.ts, r.seq) for r in columnar.readings] == [(r.ts, r.seq) for r in listed.readings]
    np.testing.assert_array_equal([r.values for r in columnar.readings], [r.values for r in listed.readings])


@pytest.mark.parametrize("bad", [True, 1e300, None, "7"])
def test_a_column_with_one_bad_value_refuses_that_reading_only(bad: object) -> None:
    decoded = _batch({"ts": [1, 2, 3], "values": {"temp": [1.0, bad, 3.0], "rpm": [1, 2, 3]}})
    assert [r.ts for r in decoded.readings] == [1.0, 3.0]
    assert [(f.index, f.error.reason) for f in decoded.refused] == [(1, Reason.NON_NUMERIC)]


def test_timestamps_outside_the_bounds_are_refused_by_their_index_in_the_message() -> None:
    bounds = t.TimeBounds(max_age_s=100.0, max_future_s=10.0)
    listed = t.decode_message(
        json.dumps(
            [{"ts": 990, "values": ["x", 1]}, {"ts": 500, "values": [1, 2]}, {"ts": 995, "values": [1, 2]}]
        ).encode(),
        "pump-1",
        CHANNELS,
        received_ts=1000.0,
        bounds=bounds,
    )
    assert [r.ts for r in listed.readings] == [995.0]
    assert [(f.index, f.error.reason) for f in listed.refused] == [(0, Reason.NON_NUMERIC), (1, Reason.STALE)]
    columnar = t.decode_message(
        json.dumps({"ts": [990, 2000, 995], "values": {"temp": [1, 2, 3], "rpm": [4, 5, 6]}}).encode(),
        "pump-1",
        CHANNELS,
        received_ts=1000.0,
        bounds=bounds,
    )
    assert [r.ts for r in columnar.readings] == [990.0, 995.0]
    assert [(f.index, f.error.reason) for f in columnar.refused] == [(1, Reason.FUTURE)]
    with pytest.raises(PayloadError) as single:
        t.decode_message(b'{"ts": 500, "values": [1, 2]}', "pump-1", CHANNELS, 1000.0, bounds=bounds)
    assert single.value.reason == Reason.STALE
