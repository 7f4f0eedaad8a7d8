"""Sparkplug B decoding: births teach aliases, DDATA metrics become readings at their own timestamps, bad
metrics are refused by index while the rest are scored, deaths take devices offline, and fuzzed payloads
(truncated protobuf, wrong types, unknown aliases, NaN, huge messages) only ever raise PayloadError."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge_agent.config import SparkplugConfig
from edge_agent.reasons import Reason
from edge_agent.simulator.sparkplug_node import SparkplugNode
from edge_agent.sparkplug import Outcome, SparkplugState, _value, rebirth_request
from edge_agent.sparkplug_schema import DataType, Payload
from edge_agent.sparkplug_topics import parse_topic, subscriptions
from edge_agent.telemetry import PayloadError, TimeBounds

CHANNELS = ["s0", "s1", "s2"]
NOW = 1_800_000_000.0


def _state(**settings_: object) -> SparkplugState:
    config = SparkplugConfig(enabled=True, **settings_)  # type: ignore[arg-type]
    return SparkplugState(config, lambda _device: CHANNELS, TimeBounds(3600, 30), 65536, 4)


def _take(state: SparkplugState, topic: str, payload: bytes) -> Outcome:
    where = parse_topic(topic)
    assert where is not None, topic
    return state.take(where, payload, NOW)


def _born(state: SparkplugState, node: SparkplugNode) -> None:
    _take(state, node.topic("NBIRTH"), node.node_birth(NOW))
    _take(state, node.topic("DBIRTH", "pump"), node.device_birth("pump", NOW, [1.0, 2.0, 3.0]))


def _rows(count: int, start: float = NOW - 10) -> list[tuple[float, list[float]]]:
    return [(start + i, [float(i), float(10 + i), float(20 + i)]) for i in range(count)]


def test_alias_only_data_after_births_become_one_reading_per_timestamp() -> None:
    state, node = _state(), SparkplugNode("plant", "gw1", {"pump": CHANNELS})
    _born(state, node)
    outcome = _take(state, node.topic("DDATA", "pump"), node.device_data("pump", _rows(5)))
    where = parse_topic(node.topic("DDATA", "pump"))
    assert where is not None and state.device_id(where) == "gw1-pump"
    assert outcome.rebirth is None and outcome.decoded is not None
    readings = outcome.decoded.readings
    assert [r.ts for r in readings] == [NOW - 10 + i for i in range(5)]
    np.testing.assert_array_equal(readings[3].values, [3.0, 13.0, 23.0])
    assert outcome.decoded.refused == []


def test_report_by_exception_carries_the_last_value_and_a_bad_metric_is_refused_by_index() -> None:
    state, node = _state(), SparkplugNode("plant", "gw1", {"pump": CHANNELS})
    _born(state, node)
    payload = Payload(timestamp=int(NOW * 1000))
    payload.metrics.add(alias=2, timestamp=int((NOW - 2) * 1000), double_value=7.5)  # only s1 changed
    payload.metrics.add(alias=1, timestamp=int((NOW - 1) * 1000), double_value=math.nan)  # refused
    payload.metrics.add(alias=3, timestamp=int((NOW - 1) * 1000), double_value=9.0)
    payload.metrics.add(alias=1, timestamp=int((NOW - 0.5) * 1000), string_value="broken")  # refused
    payload.metrics.add(alias=3, double_value=4.0)  # no timestamp: the payload's
    outcome = _take(state, node.topic("DDATA", "pump"), payload.SerializeToString())
    assert outcome.decoded is not None
    (first, last) = outcome.decoded.readings
    np.testing.assert_array_equal(first.values, [1.0, 7.5, 3.0])  # s0, s2 from the birth
    np.testing.assert_array_equal(last.values, [1.0, 7.5, 4.0])  # s2's 9.0 arrived with a refused s0
    assert last.ts == NOW
    refused = {r.index: r.error.reason for r in outcome.decoded.refused}
    assert refused == {1: Reason.NON_NUMERIC, 3: Reason.NON_NUMERIC}


def _with_raw_name(payload: Payload, raw: bytes) -> bytes:
    """`payload` serialised with one more metric whose name field holds `raw` (not UTF-8, so protobuf's
    own API cannot write it) and a double value."""
    name = bytes([0x0A, len(raw)]) + raw  # Metric field 1 (name), length-delimited
    value = bytes([0x61]) + np.float64(5.0).tobytes()  # Metric field 12 (double_value), fixed64
    metric = name + bytes([0x20, DataType.DOUBLE]) + value  # field 4 (datatype)
    return payload.SerializeToString() + bytes([0x12, len(metric)]) + metric  # Payload field 2 (metrics)


def test_a_metric_name_that_is_not_text_is_refused_and_the_rest_are_scored() -> None:
    """proto2 hands a name that is not UTF-8 over as bytes (hypothesis found it: TypeError in the channel
    lookup); in a birth such a metric is skipped, in data it is refused by index."""
    state, node = _state(), SparkplugNode("plant", "gw1", {"pump": CHANNELS})
    _take(state, node.topic("NBIRTH"), node.node_birth(NOW))
    birth = Payload()
    birth.ParseFromString(node.device_birth("pump", NOW, [1.0, 2.0, 3.0]))
    _take(state, node.topic("DBIRTH", "pump"), _with_raw_name(birth, b"\xff\xfe"))
    data = Payload(timestamp=int(NOW * 1000))
    data.metrics.add(alias=2, double_value=7.5)
    outcome = _take(state, node.topic("DDATA", "pump"), _with_raw_name(data, b"s\xff"))
    assert outcome.decoded is not None
    (reading,) = outcome.decoded.readings
    np.testing.assert_array_equal(reading.values, [1.0, 7.5, 3.0])
    assert [(r.index, r.error.reason) for r in outcome.decoded.refused] == [(1, Reason.BAD_PROTOBUF)]


def test_data_without_a_birth_are_refused_and_ask_the_node_to_rebirth_once_per_interval() -> None:
    state, node = _state(rebirth_interval_s=10), SparkplugNode("plant", "gw2", {"fan": CHANNELS})
    data = node.device_data("fan", _rows(2))
    first = _take(state, node.topic("DDATA", "fan"), data)
    assert first.rebirth == ("plant", "gw2") and first.decoded is not None
    assert first.decoded.readings == []
    assert {r.error.reason for r in first.decoded.refused} == {Reason.UNKNOWN_ALIAS}
    assert _take(state, node.topic("DDATA", "fan"), data).rebirth is None  # within the interval
    topic, payload = rebirth_request("plant", "gw2", NOW)
    command = Payload.FromString(payload)
    assert topic == "spBv1.0/plant/NCMD/gw2"
    assert [(m.name, m.boolean_value) for m in command.metrics] == [("Node Control/Rebirth", True)]


def test_named_metrics_map_by_config_or_last_path_segment_and_signed_integers_decode() -> None:
    state = _state(metric_channels={"Line/Flow rate": "s2"})
    node = SparkplugNode("plant", "gw3", {"d1": CHANNELS})
    payload = Payload()
    for name, kind, field, raw in (
        ("Motor/s0", DataType.INT16, "int_value", (-3) & 0xFFFFFFFF),
        ("s1", DataType.INT64, "long_value", (-5) & 0xFFFFFFFFFFFFFFFF),
        ("Line/Flow rate", DataType.FLOAT, "float_value", 0.5),
        ("Status", DataType.STRING, "string_value", "RUN"),  # not a channel: ignored
    ):
        payload.metrics.add(name=name, datatype=kind, timestamp=int(NOW * 1000), **{field: raw})
    outcome = _take(state, node.topic("DDATA", "d1"), payload.SerializeToString())
    assert outcome.decoded is not None and outcome.decoded.refused == []
    np.testing.assert_array_equal(outcome.decoded.readings[0].values, [-3.0, -5.0, 0.5])


def test_deaths_take_devices_offline_and_forget_their_values() -> None:
    state = _state()
    node = SparkplugNode("plant", "gw1", {"pump": CHANNELS, "fan": CHANNELS})
    _born(state, node)
    _take(state, node.topic("DBIRTH", "fan"), node.device_birth("fan", NOW, [0.0, 0.0, 0.0]))
    assert _take(state, node.topic("DDEATH", "fan"), b"").offline == ("gw1-fan",)
    assert _take(state, node.topic("NDEATH"), node.node_death()).offline == ("gw1-pump",)
    after = _take(state, node.topic("DDATA", "pump"), node.device_data("pump", _rows(1)))
    assert after.rebirth is not None  # the node's births died with it


def test_a_missed_message_is_a_seq_gap_that_asks_for_a_rebirth_and_keeps_the_data() -> None:
    state, node = _state(rebirth_interval_s=10), SparkplugNode("plant", "gw1", {"pump": CHANNELS})
    _born(state, node)  # NBIRTH seq 0, DBIRTH seq 1
    in_order = _take(state, node.topic("DDATA", "pump"), node.device_data("pump", _rows(2)))
    assert in_order.seq_gap is None and in_order.rebirth is None
    node.device_data("pump", _rows(2, NOW - 8))  # seq 3: lost on the way
    after_gap = _take(state, node.topic("DDATA", "pump"), node.device_data("pump", _rows(2, NOW - 6)))
    assert after_gap.seq_gap == (3, 4)
    assert after_gap.rebirth == ("plant", "gw1")
    assert after_gap.decoded is not None and len(after_gap.decoded.readings) == 2  # still scored
    following = _take(state, node.topic("DDATA", "pump"), node.device_data("pump", _rows(2, NOW - 4)))
    assert following.seq_gap is None  # counting goes on from the message received


def test_a_device_death_counts_in_the_seq_so_the_rebirth_after_it_is_no_gap() -> None:
    state, node = _state(), SparkplugNode("plant", "gw1", {"pump": CHANNELS})
    _born(state, node)
    _take(state, node.topic("DDATA", "pump"), node.device_data("pump", _rows(1)))
    death = _take(state, node.topic("DDEATH", "pump"), node.device_death_payload(NOW))
    assert death.offline == ("gw1-pump",) and death.seq_gap is None
    reborn = _take(state, node.topic("DBIRTH", "pump"), node.device_birth("pump", NOW, [1.0, 2.0, 3.0]))
    assert reborn.seq_gap is None and reborn.rebirth is None


def test_seq_wraps_after_255_and_an_agent_that_sees_part_of_a_node_does_not_count_gaps() -> None:
    node = SparkplugNode("plant", "gw1", {"pump": CHANNELS})
    state = _state()
    _born(state, node)
    outcomes = [
        _take(state, node.topic("DDATA", "pump"), node.device_data("pump", _rows(1, NOW - 300 + i)))
        for i in range(300)
    ]
    assert all(o.seq_gap is None for o in outcomes)  # 0..255, then 0 again
    config = SparkplugConfig(enabled=True)
    sharded = SparkplugState(
        config, lambda _device: CHANNELS, TimeBounds(3600, 30), 65536, 4, check_seq=False
    )
    _born(sharded, node)
    node.device_data("pump", _rows(1, NOW - 5))  # another agent's
    where = parse_topic(node.topic("DDATA", "pump"))
    assert where is not None
    assert sharded.take(where, node.device_data("pump", _rows(1, NOW - 4)), NOW).seq_gap is None


def test_the_late_will_of_an_earlier_session_does_not_take_a_reborn_node_offline() -> None:
    state, node = _state(), SparkplugNode("plant", "gw1", {"pump": CHANNELS})
    _born(state, node)
    old_will = node.node_death()  # bdSeq 0
    node.new_session()
    _born(state, node)  # bdSeq 1
    late = _take(state, node.topic("NDEATH"), old_will)
    assert late.stale_death and late.offline == ()
    still = _take(state, node.topic("DDATA", "pump"), node.device_data("pump", _rows(1)))
    assert still.decoded is not None and len(still.decoded.readings) == 1
    current = _take(state, node.topic("NDEATH"), node.node_death())
    assert not current.stale_death and current.offline == ("gw1-pump",)


def test_whole_message_faults_and_limits() -> None:
    state, node = _state(max_metrics_per_message=10), SparkplugNode("plant", "gw1", {"pump": CHANNELS})
    _born(state, node)
    good = node.device_data("pump", _rows(2))
    for payload, reason in (
        (good[:-3], Reason.BAD_PROTOBUF),
        (b"\xff" * 40, Reason.BAD_PROTOBUF),
        (node.device_data("pump", _rows(4)), Reason.TOO_MANY_READINGS),  # 12 metrics
        (b"\x00" * 70000, Reason.TOO_LARGE),
    ):
        with pytest.raises(PayloadError) as err:
            _take(state, node.topic("DDATA", "pump"), payload)
        assert err.value.reason == reason
    bad_id = SparkplugNode("plant", "gw 1", {"pump": CHANNELS})
    with pytest.raises(PayloadError) as err:
        _take(state, bad_id.topic("DDATA", "pump"), good)
    assert err.value.reason == Reason.BAD_DEVICE


def test_the_topics_the_agent_follows() -> None:
    assert subscriptions(SparkplugConfig(group_id="plant")) == (
        "spBv1.0/plant/NBIRTH/+",
        "spBv1.0/plant/NDEATH/+",
        "spBv1.0/plant/DBIRTH/+/+",
        "spBv1.0/plant/DDEATH/+/+",
        "spBv1.0/plant/DDATA/+/+",
    )
    assert parse_topic("spBv1.0/g/NCMD/n") is None and parse_topic("spBv1.0/g/DDATA/n") is None
    assert parse_topic("spBv1.0/g/NDATA/n") is not None
    with pytest.raises(ValueError, match="device"):
        SparkplugConfig(device_id="{node}")


_metric = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["s0", "Sensors/s1", "s2", "other", ""]),
        "alias": st.integers(0, 2**64 - 1),
        "timestamp": st.integers(0, 2**64 - 1),
        "datatype": st.integers(0, 40),
        "is_null": st.booleans(),
        "double_value": st.floats(allow_nan=True, allow_infinity=True),
        "long_value": st.integers(0, 2**64 - 1),
        "string_value": st.text(max_size=5),
    },
)


@settings(max_examples=300, deadline=None)
@given(metrics=st.lists(_metric, max_size=30), cut=st.integers(0, 400), junk=st.binary(max_size=20))
def test_fuzzed_payloads_never_raise_anything_but_a_payload_error(
    metrics: list[dict[str, object]], cut: int, junk: bytes
) -> None:
    state, node = _state(), SparkplugNode("plant", "gw1", {"pump": CHANNELS})
    _born(state, node)
    payload = Payload(timestamp=int(NOW * 1000))
    for metric in metrics:
        payload.metrics.add(**metric)
    encoded = payload.SerializeToString()
    for variant in (encoded, encoded[:cut] + junk):
        try:
            outcome = _take(state, node.topic("DDATA", "pump"), variant)
        except PayloadError as err:
            assert isinstance(err.reason, Reason)
            continue
        assert outcome.decoded is not None
        for reading in outcome.decoded.readings:
            assert np.isfinite(reading.values).all() and reading.values.shape == (3,)
        for refusal in outcome.decoded.refused:
            assert isinstance(refusal.error.reason, Reason) and refusal.index is not None


_one_value = st.fixed_dictionaries(
    {"datatype": st.sampled_from([0, DataType.FLOAT, DataType.DOUBLE, DataType.INT8, DataType.STRING])},
    optional={
        "is_null": st.booleans(),
        "double_value": st.floats(allow_nan=True, allow_infinity=True),
        "float_value": st.floats(width=32, allow_nan=True, allow_infinity=True),
        "long_value": st.integers(0, 2**64 - 1),
        "string_value": st.text(max_size=3),
    },
)


@settings(max_examples=300, deadline=None)
@given(value=_one_value, by_name=st.booleans())
@example(value={"datatype": 0, "double_value": 1e39}, by_name=False)  # past float32
@example(value={"datatype": DataType.DOUBLE, "double_value": math.nan}, by_name=False)
@example(value={"datatype": DataType.DOUBLE, "double_value": 2.5, "is_null": True}, by_name=True)
@example(value={"datatype": DataType.STRING, "double_value": 2.5}, by_name=False)
@example(value={"datatype": DataType.INT8, "long_value": 255}, by_name=False)  # two's complement: -1
def test_the_inlined_value_path_decides_as_the_general_one(value: dict[str, object], by_name: bool) -> None:
    """DDATA decoding takes a double in float32 range without calling `_value`; any value must still
    come out as `_value` reads it, or be refused with its reason."""
    state, node = _state(), SparkplugNode("plant", "gw1", {"pump": CHANNELS})
    _take(state, node.topic("NBIRTH"), node.node_birth(NOW))
    birth = node.device_birth("pump", NOW, [1.0, 2.0, 3.0])
    _take(state, node.topic("DBIRTH", "pump"), birth)
    (born,) = [m for m in Payload.FromString(birth).metrics if m.name == "Sensors/s0"]
    payload = Payload(timestamp=int(NOW * 1000))
    where = {"name": born.name} if by_name else {"alias": born.alias}  # both declared DOUBLE by the birth
    metric = payload.metrics.add(timestamp=int((NOW - 1) * 1000), **where, **value)
    try:
        expected: float | Reason = _value(metric, metric.datatype or born.datatype, "s0")
    except PayloadError as err:
        expected = err.reason
    outcome = _take(state, node.topic("DDATA", "pump"), payload.SerializeToString())
    assert outcome.decoded is not None
    if isinstance(expected, Reason):
        assert outcome.decoded.readings == []
        assert [(r.index, r.error.reason) for r in outcome.decoded.refused] == [(0, expected)]
    else:
        assert outcome.decoded.refused == []
        (reading,) = outcome.decoded.readings
        assert reading.values[0] == np.float32(expected) and reading.ts == NOW - 1


def test_made_up_device_ids_cannot_grow_the_state_past_its_bound() -> None:
    state = _state()  # at most 4 nodes and 4 devices
    node = SparkplugNode("plant", "gw1", {f"d{i}": CHANNELS for i in range(6)})
    _take(state, node.topic("NBIRTH"), node.node_birth(NOW))
    for i in range(4):
        _take(state, node.topic("DBIRTH", f"d{i}"), node.device_birth(f"d{i}", NOW, [1.0, 2.0, 3.0]))
    with pytest.raises(PayloadError) as err:
        _take(state, node.topic("DBIRTH", "d4"), node.device_birth("d4", NOW, [1.0, 2.0, 3.0]))
    assert err.value.reason == Reason.DEVICE_LIMIT
    for i in range(200):  # data for ids never born: decoded, refused, not remembered
        flood = SparkplugNode("plant", "gw1", {f"x{i}": CHANNELS})
        _take(state, flood.topic("DDATA", f"x{i}"), flood.device_data(f"x{i}", _rows(1)))
    assert len(state._values) == 4 and len(state._resolved) <= 4
    born = _take(state, node.topic("DDATA", "d0"), node.device_data("d0", _rows(2)))
    assert born.decoded is not None and len(born.decoded.readings) == 2  # the born devices still work
