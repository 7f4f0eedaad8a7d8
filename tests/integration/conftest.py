"""A real Mosquitto per test on a free port, a recorder for topics, and an agent running in a thread."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import AgentConfig, load_agent_config
from edge_agent.service import AgentService, build_agent
from trainer.demo.broker import find_mosquitto, free_port, start_mosquitto

TIMEOUT_S = 20.0


@dataclass
class Broker:
    """A mosquitto process we own."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    listener_options: str = ""  # extra lines for the listener (TLS, auth)

    def start(self) -> None:
        self.process = start_mosquitto(self.folder, self.port, self.listener_options)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """Mosquitto on a free port, stopped after the test."""
    if find_mosquitto() is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is not installed; .ci/run installs it")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    instance = Broker(port=free_port(), folder=tmp_path)
    instance.start()
    yield instance
    instance.stop()


@dataclass
class Recorder:
    """Subscribes to topics and keeps every message, for assertions."""

    port: int
    topics: list[str]
    protocol: int = mqtt.MQTTv5  # MQTTv311 for brokers without MQTT 5 (NATS)
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=self.protocol)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in self.topics])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        # Only once the broker has confirmed: a message published right after must not be missed.
        assert subscribed.wait(TIMEOUT_S), f"no SUBACK for {self.topics}"

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))
            self._lock.notify_all()

    def wait_for(
        self, predicate: Callable[[list[tuple[str, bytes, bool]]], bool], timeout: float = TIMEOUT_S
    ) -> list[tuple[str, bytes, bool]]:
        """Block until predicate(messages) holds; fail with what arrived otherwise."""
        with self._lock:
            if not self._lock.wait_for(lambda: predicate(self.messages), timeout=timeout):
                seen = sorted({t for t, _, _ in self.messages})
                last = [(t, p[:60], r) for t, p, r in self.messages[-8:]]
                raise AssertionError(
                    f"condition not met within {timeout} s; topics seen: {seen}; last messages: {last}"
                )
            return list(self.messages)

    def json_on(self, topic: str) -> list[dict[str, object]]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def recorder(broker: Broker) -> Iterator[Callable[..., Recorder]]:
    made: list[Recorder] = []

    def make(*topics: str) -> Recorder:
        made.append(Recorder(broker.port, list(topics)))
        return made[-1]

    yield make
    for item in made:
        item.close()


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> bool:
    """Poll `condition` until it holds or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def reading_payloads(values: np.ndarray, start_ts: float) -> list[bytes]:
    """One telemetry message per row: `ts` a second apart from `start_ts`, `seq` from 0, values as a list."""
    return [
        json.dumps({"ts": start_ts + i, "seq": i, "values": [float(v) for v in row]}).encode()
        for i, row in enumerate(values)
    ]


def publisher(port: int, protocol: int = mqtt.MQTTv5) -> mqtt.Client:
    """A device-side client (MQTTv311 for brokers without MQTT 5, NATS)."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=protocol)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


@dataclass
class RunningAgent:
    """An AgentService on its own thread."""

    service: AgentService
    stop: threading.Event
    thread: threading.Thread

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "agent did not stop"


def agent_config(
    bundle: Path, port: int, agent_id: str = "edge-1", **sections: dict[str, object]
) -> AgentConfig:
    """Fast-reacting settings for tests."""
    base: dict[str, object] = {
        "agent_id": agent_id,
        "bundle": str(bundle),
        "broker": {"port": port, "reconnect_min_s": 1, "reconnect_max_s": 2},
        "stats": {"interval_s": 0.5},
        "ingest": {"max_payload_bytes": 2048},
        "decision": {"start_after": 3, "end_after": 3},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}  # type: ignore[dict-item]
    return load_agent_config(None, base)


@pytest.fixture
def start_agent() -> Iterator[Callable[[AgentConfig], RunningAgent]]:
    running: list[RunningAgent] = []

    def start(config: AgentConfig) -> RunningAgent:
        service = build_agent(config)
        link = service.link
        stop = threading.Event()
        thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
        thread.start()
        assert link.connected.wait(TIMEOUT_S), "agent did not connect"
        running.append(RunningAgent(service, stop, thread))
        return running[-1]

    yield start
    for agent in running:
        if agent.thread.is_alive():
            agent.shutdown()
