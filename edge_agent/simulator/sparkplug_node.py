"""A Sparkplug B edge node for integration tests and benchmarks: births with aliases, alias-only DDATA,
deaths, and an answer to the host's rebirth request, as a real edge node (Ignition, a PLC gateway) sends.

Payloads come from the same schema the agent decodes (edge_agent.sparkplug_schema), so a test exercises
the wire format, not a shortcut around it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.sparkplug import REBIRTH_METRIC
from edge_agent.sparkplug_schema import DataType, Payload
from edge_agent.sparkplug_topics import NAMESPACE

Row = tuple[float, Sequence[float]]  # (epoch seconds, one value per channel)


class SparkplugNode:
    """One edge node with devices, each publishing `channels` as Double metrics named `Sensors/{channel}`."""

    def __init__(self, group: str, node: str, devices: dict[str, list[str]]) -> None:
        self.group, self.node, self.devices = group, node, devices
        self._seq = 0
        self.bd_seq = 0  # the session number: NBIRTH and the NDEATH will of one connection share it
        self.rebirths = 0  # rebirth requests answered
        self._aliases: dict[tuple[str, str], int] = {}
        alias = 1
        for device, channels in devices.items():
            for channel in channels:
                self._aliases[(device, channel)] = alias
                alias += 1
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()
        self._last: dict[str, Sequence[float]] = {}  # each device's latest values, for a rebirth
        self._hosts: dict[str, bool] = {}  # primary host id -> online, from its STATE messages
        self._host_changed = threading.Condition()

    def topic(self, kind: str, device: str | None = None) -> str:
        base = f"{NAMESPACE}/{self.group}/{kind}/{self.node}"
        return base if device is None else f"{base}/{device}"

    # payloads (pure)
    def node_birth(self, now: float) -> bytes:
        payload = self._payload(now)
        payload.metrics.add(name=REBIRTH_METRIC, datatype=DataType.BOOLEAN, boolean_value=False)
        payload.metrics.add(name="bdSeq", datatype=DataType.INT64, long_value=self.bd_seq)
        return bytes(payload.SerializeToString())

    def device_birth(self, device: str, now: float, values: Sequence[float]) -> bytes:
        payload = self._payload(now)
        for channel, value in zip(self.devices[device], values, strict=True):
            payload.metrics.add(
                name=f"Sensors/{channel}",
                alias=self._aliases[(device, channel)],
                timestamp=int(now * 1000),
                datatype=DataType.DOUBLE,
                double_value=value,
            )
        payload.metrics.add(name="Properties/Serial", datatype=DataType.STRING, string_value=device)
        return bytes(payload.SerializeToString())

    def device_data(self, device: str, rows: Sequence[Row]) -> bytes:
        """Alias-only metrics, each with its row's timestamp: len(rows) x channels metrics."""
        payload = self._payload(rows[-1][0] if rows else 0.0)
        aliases = [self._aliases[(device, channel)] for channel in self.devices[device]]
        for ts, values in rows:
            ms = int(round(ts * 1000))
            for alias, value in zip(aliases, values, strict=True):
                payload.metrics.add(alias=alias, timestamp=ms, double_value=value)
        return bytes(payload.SerializeToString())

    def _payload(self, now: float) -> Any:
        with self._lock:
            seq, self._seq = self._seq, (self._seq + 1) % 256
        return Payload(timestamp=int(now * 1000), seq=seq)

    # on a broker
    def connect(self, host: str, port: int) -> None:
        """Connect with NDEATH as the will, follow NCMD, and publish every birth."""
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"spb-{self.group}-{self.node}"
        )
        client.will_set(self.topic("NDEATH"), self.node_death(), qos=1)
        client.on_message = self._on_command
        client.connect(host, port)
        client.subscribe(self.topic("NCMD"), qos=0)
        client.loop_start()
        self._client = client

    def wait_for_host(self, host_id: str, timeout: float) -> bool:
        """What a node configured with a primary host does before its births: wait until the host's STATE
        says online. False if it does not within `timeout` (or says offline)."""
        assert self._client is not None, "connect() first"
        topic = f"{NAMESPACE}/STATE/{host_id}"
        if host_id not in self._hosts:
            self._client.subscribe(topic, qos=1)
        with self._host_changed:
            return self._host_changed.wait_for(lambda: self._hosts.get(host_id, False), timeout)

    def node_death(self) -> bytes:
        """The NDEATH of the current session (the will of its connection)."""
        payload = Payload()
        payload.metrics.add(name="bdSeq", datatype=DataType.INT64, long_value=self.bd_seq)
        return bytes(payload.SerializeToString())

    def new_session(self) -> None:
        """What a reconnecting node does: the next bdSeq, and seq counting again from its NBIRTH."""
        with self._lock:
            self.bd_seq = (self.bd_seq + 1) % 256
            self._seq = 0

    def set_values(self, values: dict[str, Sequence[float]]) -> None:
        """What a rebirth reports for each device before it has sent data (a node that starts mid-stream)."""
        self._last = dict(values)

    def birth(self, now: float, values: dict[str, Sequence[float]]) -> None:
        """NBIRTH, then a DBIRTH per device with its starting values."""
        self._publish(self.topic("NBIRTH"), self.node_birth(now))
        self._last = dict(values)
        for device in self.devices:
            self._publish(self.topic("DBIRTH", device), self.device_birth(device, now, values[device]))

    def data(self, device: str, rows: Sequence[Row]) -> None:
        self._last[device] = rows[-1][1]
        self._publish(self.topic("DDATA", device), self.device_data(device, rows))

    def device_death_payload(self, now: float) -> bytes:
        """A DDEATH: no metrics, the next seq."""
        return bytes(self._payload(now).SerializeToString())

    def device_death(self, device: str, now: float) -> None:
        self._publish(self.topic("DDEATH", device), self.device_death_payload(now))

    def disconnect(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def _publish(self, topic: str, payload: bytes) -> None:
        assert self._client is not None, "connect() first"
        self._client.publish(topic, payload, qos=0).wait_for_publish(5)

    def _on_command(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.startswith(f"{NAMESPACE}/STATE/"):
            with self._host_changed:
                self._hosts[message.topic.rsplit("/", 1)[-1]] = bool(json.loads(message.payload)["online"])
                self._host_changed.notify_all()
            return
        command = Payload.FromString(message.payload)
        if any(m.name == REBIRTH_METRIC and m.boolean_value for m in command.metrics):
            self.rebirths += 1
            now = command.timestamp / 1000.0
            threading.Thread(target=self.birth, args=(now, self._last), daemon=True).start()
