"""Sparkplug B in: births teach metric names, aliases and data types; DDATA metrics become readings; deaths
take devices offline; data the agent cannot place asks the node for a rebirth. Pure: no I/O.

Sessions, as the specification asks of a host application: every message of a node after its NBIRTH carries
the next `seq` (mod 256), so a gap means a message was lost (QoS 0) and what the agent knows may be stale:
it asks the node for a rebirth, and the data in hand are still used. An NDEATH whose `bdSeq` differs from
the node's current NBIRTH is the will of an earlier session, delivered late after the node reconnected:
it is ignored, where following it would take a live node's devices offline.

Topics are `spBv1.0/{group}/{type}/{node}[/{device}]`. A device's reading is the last known value of every
bundle channel at one timestamp (Sparkplug reports by exception: a DDATA carries the metrics that changed,
and the DBIRTH the starting values). Each distinct metric timestamp in a DDATA is one reading, in message
order; a metric without its own timestamp takes the payload's, else the arrival time. Every metric that
cannot be used is refused with its index in the message and a reason; the others are still scored.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from edge_agent.config import SparkplugConfig
from edge_agent.reasons import Reason
from edge_agent.sparkplug_schema import DataType, Payload
from edge_agent.sparkplug_topics import BIRTH, DEATH, NAMESPACE, SparkplugTopic
from edge_agent.telemetry import (
    DEVICE_ID,
    FLOAT32_MAX,
    Decoded,
    PayloadError,
    Reading,
    Refusal,
    TimeBounds,
    checked_number,
)

REBIRTH_METRIC = "Node Control/Rebirth"

_SIGNED_BITS = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_NUMERIC = frozenset(DataType) - {DataType.STRING, DataType.TEXT, DataType.DATETIME}
_FLOATS = frozenset((0, DataType.FLOAT, DataType.DOUBLE))
MAX_RESOLVED = 4096  # metric names and aliases remembered per device

NodeKey = tuple[str, str]  # (group, node)
Proto = Any  # a Payload or Payload.Metric: classes built at run time (sparkplug_schema)


def rebirth_request(group: str, node: str, now: float) -> tuple[str, bytes]:
    """The NCMD topic and payload that ask an edge node to publish its births again."""
    payload = Payload(timestamp=int(now * 1000))
    payload.metrics.add(name=REBIRTH_METRIC, datatype=DataType.BOOLEAN, boolean_value=True)
    return f"{NAMESPACE}/{group}/NCMD/{node}", payload.SerializeToString()


@dataclass(slots=True)
class _Metric:
    name: str
    datatype: int


@dataclass(slots=True)
class _Node:
    """What a node's births declared: metrics by alias (node and devices share the alias space)."""

    by_alias: dict[int, _Metric] = field(default_factory=dict)
    datatypes: dict[str, int] = field(default_factory=dict)  # by name
    last_rebirth: float = -math.inf
    seq: int | None = None  # of the node's last message; None until a birth says where it starts
    bd_seq: int | None = None  # the session number its NBIRTH declared, which its NDEATH will repeat


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one Sparkplug message did: its device's readings, devices gone offline, a node to ask again."""

    decoded: Decoded | None = None
    offline: tuple[str, ...] = ()
    rebirth: NodeKey | None = None
    seq_gap: tuple[int, int] | None = None  # (expected, received) when a message was missed
    stale_death: bool = False  # an NDEATH of an earlier session, ignored


class SparkplugState:
    """Births, aliases and last known channel values per device; at most `max_tracked` nodes and as many
    devices."""

    def __init__(
        self,
        config: SparkplugConfig,
        channels_for: Callable[[str], list[str]],
        bounds: TimeBounds,
        max_bytes: int,
        max_tracked: int,
        check_seq: bool = True,
    ) -> None:
        """`check_seq`: whether this agent sees every message of a node (not so when shards or a shared
        subscription split a node's devices among agents: then the others' messages look like gaps)."""
        self.config, self._channels_for, self._bounds = config, channels_for, bounds
        self._check_seq = check_seq
        self._max_bytes, self._max_tracked = max_bytes, max_tracked
        self._nodes: dict[NodeKey, _Node] = {}
        self._values: dict[str, npt.NDArray[np.float64]] = {}  # device -> last value per channel (NaN: none)
        self._devices_of: dict[NodeKey, set[str]] = {}
        # device -> metric name or alias -> (channel index or None, data type): resolved once per birth
        self._resolved: dict[str, dict[str | int, tuple[int | None, int]]] = {}

    def device_id(self, where: SparkplugTopic) -> str:
        """The agent's id for the device (or node, for NDATA) of `where`; PayloadError if not a valid id."""
        template = self.config.device_id if where.device is not None else "{node}"
        device = template.format(group=where.group, node=where.node, device=where.device or "")
        if not DEVICE_ID.fullmatch(device):
            raise PayloadError(
                Reason.BAD_DEVICE, f"device id {device[:80]!r} does not match {DEVICE_ID.pattern}"
            )
        return device

    def take(self, where: SparkplugTopic, payload_bytes: bytes, received_ts: float) -> Outcome:
        """Apply one message. Whole-message faults raise PayloadError; metric faults are refusals."""
        if where.kind == DEATH:
            key = (where.group, where.node)
            if where.device is None:  # the will: no seq, a session number instead
                if self._stale_death(key, payload_bytes):
                    return Outcome(stale_death=True)
                return Outcome(offline=self._death(key, where))
            gap = self._death_sequence(key, payload_bytes)  # a DDEATH counts in the node's seq
            rebirth = key if gap is not None and self._may_ask(key, received_ts) else None
            return Outcome(offline=self._death(key, where), rebirth=rebirth, seq_gap=gap)
        return self.take_for(where, self.device_id(where), payload_bytes, received_ts)

    def _death_sequence(self, key: NodeKey, payload_bytes: bytes) -> tuple[int, int] | None:
        """A DDEATH's place in the node's seq; an unreadable one leaves the count as it was."""
        payload = self._readable(payload_bytes)
        return None if payload is None else self._sequence(key, payload)

    def _readable(self, payload_bytes: bytes) -> Proto | None:
        """A death's payload, or None: a death that cannot be read is still a death."""
        try:
            return Payload.FromString(payload_bytes[: self._max_bytes])
        except DecodeError:
            return None

    def _stale_death(self, key: NodeKey, payload_bytes: bytes) -> bool:
        """Whether an NDEATH names another session (bdSeq) than the node's current birth."""
        node = self._nodes.get(key)
        if node is None or node.bd_seq is None:
            return False
        payload = self._readable(payload_bytes)
        declared = None if payload is None else _bd_seq(payload)
        return declared is not None and declared != node.bd_seq

    def take_for(
        self, where: SparkplugTopic, device: str, payload_bytes: bytes, received_ts: float
    ) -> Outcome:
        """`take` for a birth or data message whose device id the caller has already made (`device_id`)."""
        key = (where.group, where.node)
        payload = self._parse(payload_bytes)
        node_birth = where.kind == BIRTH and where.device is None
        gap = None if node_birth else self._sequence(key, payload)
        if where.kind == BIRTH:
            self._birth(key, device, payload, node_birth)
            if node_birth:
                born = self._nodes[key]
                born.seq = int(payload.seq) if payload.HasField("seq") else None
                born.bd_seq = _bd_seq(payload)
            rebirth = key if gap is not None and self._may_ask(key, received_ts) else None
            return Outcome(rebirth=rebirth, seq_gap=gap)
        node = self._nodes.get(key)
        decoded, unknown = self._data(node, device, payload, received_ts)
        ask = node is None or unknown or gap is not None
        rebirth = key if ask and self._may_ask(key, received_ts) else None
        return Outcome(decoded=decoded, rebirth=rebirth, seq_gap=gap)

    def _sequence(self, key: NodeKey, payload: Proto) -> tuple[int, int] | None:
        """(expected, received) when this message does not follow the node's last one; it becomes the last."""
        node = self._nodes.get(key)
        if node is None or not payload.HasField("seq"):
            return None
        received = int(payload.seq) % 256
        expected = None if node.seq is None else (node.seq + 1) % 256
        node.seq = received
        if not self._check_seq or expected is None or received == expected:
            return None
        return expected, received

    def _parse(self, payload_bytes: bytes) -> Proto:
        if len(payload_bytes) > self._max_bytes:
            raise PayloadError(Reason.TOO_LARGE, f"{len(payload_bytes)} bytes > {self._max_bytes}")
        try:
            payload = Payload.FromString(payload_bytes)
        except DecodeError as err:
            raise PayloadError(Reason.BAD_PROTOBUF, f"not a Sparkplug B payload: {str(err)[:80]}") from None
        if len(payload.metrics) > self.config.max_metrics_per_message:
            count = len(payload.metrics)
            raise PayloadError(
                Reason.TOO_MANY_READINGS, f"{count} metrics > {self.config.max_metrics_per_message}"
            )
        return payload

    def _node(self, key: NodeKey) -> _Node:
        node = self._nodes.get(key)
        if node is None:
            if len(self._nodes) >= self._max_tracked:
                raise PayloadError(Reason.DEVICE_LIMIT, f"already following {self._max_tracked} nodes")
            node = self._nodes[key] = _Node()
        return node

    def _birth(self, key: NodeKey, device: str, payload: Proto, node_birth: bool) -> None:
        """Learn the birth's metrics and set the channels' starting values."""
        node = self._node(key)
        if node_birth:  # a new session of the node: its devices' births follow and declare their aliases
            node.by_alias.clear()
            node.datatypes.clear()
            for known in self._devices_of.get(key, set()):
                self._resolved.pop(known, None)
        self._resolved.pop(device, None)
        channels = self._channels_for(device)
        values = np.full(len(channels), np.nan)
        for metric in payload.metrics:
            try:
                name = _text_name(metric)
            except PayloadError:
                continue  # a name that is not text cannot be mapped: data under it are refused later
            if not name:
                continue
            node.datatypes[name] = metric.datatype
            if metric.HasField("alias"):
                node.by_alias[metric.alias] = _Metric(name, metric.datatype)
            index = self._channel(name, channels)
            if index is not None:
                # A birth value that cannot be scored stays unknown until data bring one.
                with contextlib.suppress(PayloadError):
                    values[index] = _value(metric, metric.datatype, channels[index])
        if node_birth and not self.config.ndata:
            return  # the node's own metrics are not scored: nothing to keep for it
        if device not in self._values and len(self._values) >= self._max_tracked:
            raise PayloadError(Reason.DEVICE_LIMIT, f"already following {self._max_tracked} devices")
        self._values[device] = values
        self._devices_of.setdefault(key, set()).add(device)

    def _death(self, key: NodeKey, where: SparkplugTopic) -> tuple[str, ...]:
        """The devices that went offline: the one named, or every device of a dead node."""
        if where.device is not None:
            try:
                device = self.device_id(where)
            except PayloadError:
                return ()
            self._values.pop(device, None)
            self._resolved.pop(device, None)
            self._devices_of.get(key, set()).discard(device)
            return (device,)
        self._nodes.pop(key, None)
        gone = tuple(sorted(self._devices_of.pop(key, set())))
        for device in gone:
            self._values.pop(device, None)
            self._resolved.pop(device, None)
        return gone

    def _may_ask(self, key: NodeKey, now: float) -> bool:
        node = self._nodes.get(key)
        if node is None:
            if len(self._nodes) >= self._max_tracked:
                return False
            node = self._nodes[key] = _Node()
        if now - node.last_rebirth < self.config.rebirth_interval_s:
            return False
        node.last_rebirth = now
        return True

    def _channel(self, name: str, channels: list[str]) -> int | None:
        mapped = self.config.metric_channels.get(name)
        if mapped is None:
            mapped = name if name in channels else name.rsplit("/", 1)[-1]
        try:
            return channels.index(mapped)
        except ValueError:
            return None

    def _data(
        self, node: _Node | None, device: str, payload: Proto, received_ts: float
    ) -> tuple[Decoded, bool]:
        """Readings from a DDATA (or NDATA) and whether an alias was unknown."""
        channels = self._channels_for(device)
        groups, refused, unknown = self._updates(node, device, payload, channels)
        values = self._values.get(device)
        if values is None or len(values) != len(channels):
            values = np.full(len(channels), np.nan)
        readings = []
        # Only values that are not NaN are written, so once every channel has one it stays so: the NaN
        # scan runs until then, not for every reading.
        complete = False
        for ms, updates in groups.items():
            bad = False
            for _, channel, value in updates:
                if math.isnan(value):
                    bad = True  # refused already; the group's other channels still update
                else:
                    values[channel] = value
            if bad:
                continue
            ts = received_ts if ms is None else ms / 1000.0
            try:
                if not complete:
                    complete = not np.isnan(values).any()
                if not complete:
                    missing = ", ".join(channels[i] for i in np.flatnonzero(np.isnan(values))[:5])
                    raise PayloadError(Reason.MISSING_CHANNEL, f"no value yet for {missing} (no birth?)")
                self._bounds.check(ts, received_ts)
            except PayloadError as err:
                refused.append(Refusal(updates[0][0], err))
                continue
            readings.append(Reading(device, ts, values.astype(np.float32), None, received_ts))
        self._keep_values(device, values)
        return Decoded(readings, refused), unknown

    def _keep_values(self, device: str, values: npt.NDArray[np.float64]) -> None:
        """Remember a device's last values, for at most `max_tracked` devices: ids in topics are the sender's
        choice, so a flood of new ones must not grow the agent (past the limit, a new device's data are
        still decoded against NaN starting values, and refused where a channel has none)."""
        if device in self._values or len(self._values) < self._max_tracked:
            self._values[device] = values

    def _updates(
        self, node: _Node | None, device: str, payload: Proto, channels: list[str]
    ) -> tuple[dict[int | None, list[tuple[int, int, float]]], list[Refusal], bool]:
        """The message's channel updates by timestamp (ms -> (metric index, channel, value; NaN when
        refused)), its refusals, and whether an alias was unknown."""
        default_ms = payload.timestamp or None
        groups: dict[int | None, list[tuple[int, int, float]]] = {}
        refused: list[Refusal] = []
        unknown = False
        resolved = self._resolved.get(device)
        if resolved is None:
            resolved = {}
            if len(self._resolved) < self._max_tracked:  # bounded like the values: ids are the sender's
                self._resolved[device] = resolved
        if len(resolved) > MAX_RESOLVED:  # names in data are the sender's choice: bound what they cost
            resolved.clear()
        # Once per metric, so the common case (a known name or alias, a double in float32 range) is inlined.
        for index, metric in enumerate(payload.metrics):
            key: str | int | None = metric.name or (metric.alias if metric.HasField("alias") else None)
            hit = None if key is None else resolved.get(key)
            if hit is None:
                try:
                    name, datatype = self._identify(node, metric)
                except PayloadError as err:
                    unknown = unknown or err.reason == Reason.UNKNOWN_ALIAS
                    refused.append(Refusal(index, err))
                    continue
                hit = (self._channel(name, channels), datatype)
                if key is not None:  # always so here: a metric with neither name nor alias was refused
                    resolved[key] = hit
            channel, datatype = hit
            if channel is None:
                continue  # a metric the bundle does not score (status, properties, ...)
            ms = metric.timestamp or default_ms  # 0: not set (no reading is from 1970)
            datatype = metric.datatype or datatype
            value = metric.double_value
            if not (
                datatype in _FLOATS
                and metric.WhichOneof("value") == "double_value"
                and not metric.is_null
                and -FLOAT32_MAX <= value <= FLOAT32_MAX  # False for NaN too
            ):
                try:
                    value = _value(metric, datatype, channels[channel])
                except PayloadError as err:
                    refused.append(Refusal(index, err))
                    value = math.nan
            group = groups.get(ms)
            if group is None:
                group = groups[ms] = []
            group.append((index, channel, value))
        return groups, refused, unknown

    @staticmethod
    def _identify(node: _Node | None, metric: Proto) -> tuple[str, int]:
        """The metric's name and data type, from itself or from the birth that declared its alias."""
        declared = None
        if metric.HasField("alias"):
            declared = node.by_alias.get(metric.alias) if node is not None else None
            if declared is None and not metric.name:
                raise PayloadError(Reason.UNKNOWN_ALIAS, f"alias {metric.alias} was not in a birth")
        name = _text_name(metric) or (declared.name if declared is not None else "")
        if not name:
            raise PayloadError(Reason.MISSING_VALUES, "a metric with neither name nor alias")
        datatype = metric.datatype if metric.HasField("datatype") else 0
        if not datatype:
            datatype = (
                declared.datatype if declared is not None else (node.datatypes.get(name, 0) if node else 0)
            )
        return name, datatype


def _text_name(metric: Proto) -> str:
    """The metric's name ("" for none). The schema is proto2, whose runtime hands a string field that is
    not UTF-8 over as bytes; a fuzzed DDATA with such a name raised TypeError in the channel lookup."""
    name = metric.name
    if not isinstance(name, str):
        raise PayloadError(Reason.BAD_PROTOBUF, "a metric name that is not UTF-8 text")
    return name


def _bd_seq(payload: Proto) -> int | None:
    """The session number (metric bdSeq) an NBIRTH or NDEATH carries, if any."""
    for metric in payload.metrics:
        if metric.name == "bdSeq" and metric.WhichOneof("value") in ("long_value", "int_value"):
            return int(getattr(metric, metric.WhichOneof("value")))
    return None


def _value(metric: Proto, datatype: int, channel: str) -> float:
    """A metric's value as a float for scoring; PayloadError for null, text, arrays and non-finite values."""
    kind = metric.WhichOneof("value")  # `_updates` reads an in-range double itself; this is the rest
    if metric.is_null:
        raise PayloadError(Reason.NON_NUMERIC, "a null metric")
    if kind is None or kind in ("string_value", "bytes_value") or (datatype and datatype not in _NUMERIC):
        raise PayloadError(Reason.NON_NUMERIC, f"data type {datatype} ({kind or 'no value'}) is not scored")
    raw = getattr(metric, kind)
    bits = _SIGNED_BITS.get(DataType(datatype)) if datatype in _SIGNED_BITS else None
    if bits is not None and kind in ("int_value", "long_value"):
        raw = int(raw) & ((1 << bits) - 1)  # two's complement in an unsigned field, per the specification
        raw = raw - (1 << bits) if raw >> (bits - 1) else raw
    return checked_number(float(raw) if isinstance(raw, bool) else raw, channel)
