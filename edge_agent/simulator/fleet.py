"""Publish a simulated fleet: generated readings on time, faults as planned, ground truth beside them.

One thread keeps every device on its own schedule with a heap of due times; each device's timestamps are its
own clock (start + n / rate), so a late publish never bends the stream's time axis. The achieved rate and the
worst lag behind schedule are reported, so a fleet too large for one process shows up as a number.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.bundle import Bundle
from edge_agent.config import BrokerConfig, TopicsConfig
from edge_agent.errors import EdgeAgentError
from edge_agent.mqtt_link import configure_credentials
from edge_agent.operating_range import OperatingRange
from edge_agent.routing import telemetry_topic
from edge_agent.simulator import faults
from edge_agent.simulator.faults import Injection
from edge_agent.simulator.scenario import Scenario, plan_faults
from edge_agent.simulator.stream import DeviceStream, Generator
from edge_agent.simulator.vetting import ChunkJudge

log = logging.getLogger(__name__)

TRUTH_TOPIC = "sim/{device}/truth"


@dataclass
class FleetReport:
    """What a run published."""

    devices: int
    seconds: float
    published: int
    planned_readings: int
    max_lag_s: float
    truth: list[dict[str, object]] = field(default_factory=list)
    dropped: int = 0  # messages paho refused because too many were waiting for the broker
    vetting: dict[str, int] | None = None  # what the clean streams' judge did (VettingCounts); None: off

    @property
    def rate_per_s(self) -> float:
        """Messages per second achieved."""
        return self.published / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Device:
    name: str
    stream: DeviceStream
    rate_hz: float
    start: float
    count: int = 0
    held: bytes | None = None  # an out-of-order message waiting to go after the next one

    def ts(self) -> float:
        return self.start + self.count / self.rate_hz


def plain_client(broker: BrokerConfig, client_id: str = "") -> mqtt.Client:
    """A paho client with the broker's protocol and credentials, not yet connected (set callbacks first)."""
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if broker.protocol == "5" else mqtt.MQTTv311,
    )
    configure_credentials(client, broker)
    return client


def connect_client(client: mqtt.Client, broker: BrokerConfig) -> None:
    """Connect and start paho's network thread; an unreachable broker is a one-line EdgeAgentError."""
    try:
        client.connect(broker.host, broker.port, keepalive=broker.keepalive_s)
    except OSError as err:
        raise EdgeAgentError(f"cannot reach the broker at {broker.host}:{broker.port}: {err}") from None
    client.loop_start()


def connect_publisher(broker: BrokerConfig, client_id: str) -> mqtt.Client:
    """A connected client for publishing many QoS 1 messages."""
    client = plain_client(broker, client_id)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connect_client(client, broker)
    return client


class Fleet:
    """Simulated devices of one bundle."""

    def __init__(
        self,
        bundle: Bundle,
        scenario: Scenario,
        start: float | None = None,
        topics: TopicsConfig | None = None,
    ) -> None:
        """`topics`: the agent's (its telemetry filter names where each device publishes)."""
        self.bundle, self.scenario = bundle, scenario
        self.telemetry_filter = (topics or TopicsConfig()).telemetry
        self.generator = Generator(bundle)
        self.judge = ChunkJudge.for_bundle(bundle) if scenario.vet else None
        accepted = OperatingRange(bundle.manifest)
        self.channels = list(bundle.manifest.channels)
        rng = np.random.default_rng(scenario.seed)
        self._rebase_at_run = start is None  # real-time runs start their clocks when `run` begins
        start = time.time() if start is None else start
        self.start = start
        self.devices: list[_Device] = []
        for index in range(scenario.devices):
            rate = scenario.rate_hz * (1 + scenario.rate_spread * rng.uniform(-1, 1))
            phase = rng.uniform(0, 1 / rate)  # devices do not all report on the same tick
            stream = DeviceStream(
                self.generator,
                seed=scenario.seed * 100_003 + index,
                variation=scenario.variation,
                judge=self.judge,
                bounds=(accepted.low, accepted.high),
            )
            self.devices.append(_Device(scenario.device_name(index), stream, rate, start + phase))
        self.injections = plan_faults(
            scenario,
            self.channels,
            [d.start for d in self.devices],
            [d.rate_hz for d in self.devices],
            bundle.manifest.window_len,
        )
        self._by_device: dict[str, list[Injection]] = {}
        for injection in self.injections:
            self._by_device.setdefault(injection.device, []).append(injection)
        self._rng = np.random.default_rng(scenario.seed + 2)
        self.last_info: mqtt.MQTTMessageInfo | None = None  # waited for before disconnecting

    def vetting(self) -> dict[str, int] | None:
        """What the clean streams' judge has done so far (VettingCounts); None where judging is off."""
        return None if self.judge is None else self.judge.counts.as_dict()

    def _shift(self, seconds: float) -> None:
        self.start += seconds
        for device in self.devices:
            device.start += seconds
        for injection in self.injections:
            injection.start += seconds
            injection.end += seconds

    def reading(self, device: _Device) -> list[bytes]:
        """The payloads this device sends for its next reading (none, one, or a duplicate pair)."""
        ts = device.ts()
        row = device.stream.next_row()
        active = [i for i in self._by_device.get(device.name, ()) if i.active(ts)]
        for injection in active:
            row = injection.apply(row, ts, self.generator.mean, self.generator.scale, self._rng)
        kinds = {i.kind for i in active}
        seq = device.count
        device.count += 1
        if faults.DROPOUT in kinds:
            return []
        if faults.CLOCK_SKEW in kinds:
            ts += faults.CLOCK_SKEW_S
        values = {name: float(v) for name, v in zip(self.channels, row, strict=True)}
        if faults.NAN in kinds:
            values[self.channels[0]] = float("nan")
            payload = json.dumps({"ts": ts, "seq": seq, "values": values}).encode()  # writes a NaN token
        else:
            payload = orjson.dumps({"ts": ts, "seq": seq, "values": values})
        if faults.MALFORMED in kinds:
            payload = payload[: len(payload) // 2]
        out = [payload, payload] if faults.DUPLICATE in kinds else [payload]
        if faults.OUT_OF_ORDER in kinds and device.held is None:
            device.held = payload  # sent after the next reading: it arrives late
            return []
        if device.held is not None:
            out.append(device.held)
            device.held = None
        return out

    def run(
        self,
        client: mqtt.Client,
        duration_s: float,
        stop: threading.Event | None = None,
        truth_out: IO[str] | None = None,
        on_truth: Callable[[dict[str, object]], None] | None = None,
    ) -> FleetReport:
        """Publish in real time for `duration_s` seconds (or until `stop`)."""
        stop = stop or threading.Event()
        if self._rebase_at_run:
            self._shift(time.time() - self.start)  # building a large fleet takes seconds: no backlog from it
        due = [(d.start, i) for i, d in enumerate(self.devices)]
        heapq.heapify(due)
        pending_truth = list(self.injections)
        truth: list[dict[str, object]] = []
        began = time.time()
        end = began + duration_s
        published = planned = dropped = 0
        max_lag = 0.0
        while due and not stop.is_set():
            when, index = due[0]
            if when >= end:
                break
            now = time.time()
            if when > now:
                time.sleep(min(when - now, 0.05))
                continue
            heapq.heappop(due)
            max_lag = max(max_lag, now - when)
            while pending_truth and pending_truth[0].start <= when:
                record = pending_truth.pop(0).truth(self.channels)
                truth.append(record)
                client.publish(TRUTH_TOPIC.format(device=record["device"]), json.dumps(record), qos=1)
                if truth_out is not None:
                    truth_out.write(json.dumps(record) + "\n")
                    truth_out.flush()
                if on_truth is not None:
                    on_truth(record)
            device = self.devices[index]
            for payload in self.reading(device):
                info = client.publish(telemetry_topic(self.telemetry_filter, device.name), payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
                    dropped += 1  # paho's queue is full (65,535 unacknowledged): the broker cannot keep up
                    continue
                self.last_info = info
                published += 1
            planned += 1
            heapq.heappush(due, (device.ts(), index))
        return FleetReport(
            devices=len(self.devices),
            seconds=max(time.time() - began, 1e-9),
            published=published,
            planned_readings=planned,
            max_lag_s=max_lag,
            truth=truth,
            dropped=dropped,
            vetting=self.vetting(),
        )


def finish_publishing(client: mqtt.Client, last: mqtt.MQTTMessageInfo | None, timeout_s: float = 30) -> None:
    """Wait until the broker has taken the last message (paho sends in order), then disconnect."""
    if last is not None:
        try:
            last.wait_for_publish(timeout_s)
        except RuntimeError as err:  # the connection went away: say so, the caller reports the count
            log.warning("not every message reached the broker: %s", err)
    client.disconnect()
    client.loop_stop()


def write_truth_file(path: Path) -> IO[str]:
    """Open the ground-truth file (JSON lines), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")
