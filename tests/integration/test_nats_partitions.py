"""Scale-out without fan-out: NATS (its MQTT listener, JetStream for QoS 1 sessions) maps each device's
telemetry subject to one of N partitions, and each agent subscribes to its partition only.

Devices keep publishing to `sensors/{device}/telemetry`; the broker's subject mapping
in deploy/nats/partitions.conf decides, and the agent
finds the device at the '+' of `part/{i}/sensors/+/telemetry`. The agent needs nothing new.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from benchmarks.nats_cluster import nats_cluster
from tests.conftest import correlated_series
from tests.integration.conftest import (
    Recorder,
    RunningAgent,
    agent_config,
    publisher,
    reading_payloads,
    wait_until,
)

WINDOW = 32  # the tiny bundle's window_len
PARTITIONS = 3  # as deploy/nats/partitions.conf has it
SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "nats"
DEVICES = [f"pump-{i}" for i in range(8)]
READINGS = 80  # per device; the first 20 before partition 0's agent goes away, the rest while it is away


def _nats_server() -> str:
    """The nats-server binary; CI installs it, elsewhere the test says how."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        if os.environ.get("CI"):
            pytest.fail("nats-server is not installed; .ci/run installs it")
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    return binary


@pytest.fixture
def nats_mqtt(tmp_path: Path) -> Iterator[int]:
    """One NATS node (JetStream, MQTT listener) with the deploy sample's partition map; its MQTT port.
    Started as the fleet benchmark starts its cluster, so both run the same configuration."""
    _nats_server()
    with nats_cluster(tmp_path, nodes=1, partitions=PARTITIONS) as ports:
        yield ports[0]


def _partition_agent(
    start_agent: Callable[..., RunningAgent], bundle: Path, port: int, index: int
) -> RunningAgent:
    config = agent_config(
        bundle,
        port,
        agent_id=f"part-{index}",
        broker={"protocol": "3.1.1"},  # NATS speaks MQTT 3.1.1; QoS 1 sessions live in JetStream
        topics={"telemetry": f"part/{index}/sensors/+/telemetry", "score": f"scores/{index}/{{device}}"},
    )
    return start_agent(config)


def _publish(port: int, rows: range) -> None:
    client = publisher(port, mqtt.MQTTv311)
    payloads = reading_payloads(correlated_series(READINGS, seed=12), time.time() - 2 * READINGS)
    for i in rows:
        for device in DEVICES:
            client.publish(f"sensors/{device}/telemetry", payloads[i], qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def _scored_devices(watch: Recorder, index: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for topic, _, _ in watch.messages:
        parts = topic.split("/")
        if parts[:2] == ["scores", str(index)]:
            counts[parts[2]] = counts.get(parts[2], 0) + 1
    return counts


def test_each_device_reaches_exactly_one_partition_agent_and_survives_its_restart(
    tiny_bundle: Path, nats_mqtt: int, start_agent: Callable[..., RunningAgent]
) -> None:
    watch = Recorder(nats_mqtt, ["scores/#"], protocol=mqtt.MQTTv311)
    agents = [_partition_agent(start_agent, tiny_bundle, nats_mqtt, i) for i in range(PARTITIONS)]
    _publish(nats_mqtt, range(0, 20))
    assert wait_until(lambda: sum(a.service.stats.received for a in agents) == 20 * len(DEVICES), timeout=30)
    # Each agent received its own partition's readings only: the broker split the fleet, no agent dropped
    # another's devices.
    tracked = [set(a.service.ingest.health.snapshot(len(DEVICES))) for a in agents]
    assert sum(len(devices) for devices in tracked) == len(DEVICES), tracked  # none in two partitions
    assert set().union(*tracked) == set(DEVICES), tracked
    assert all(tracked), "with 8 devices every partition holds some"
    for agent, devices in zip(agents, tracked, strict=True):
        assert agent.service.stats.received == 20 * len(devices)
    # Partition 0's agent goes away; its readings wait in its JetStream-backed session until it returns.
    agents[0].shutdown()
    _publish(nats_mqtt, range(20, READINGS))
    returned = _partition_agent(start_agent, tiny_bundle, nats_mqtt, 0)
    away = READINGS - 20
    assert wait_until(lambda: returned.service.stats.received == away * len(tracked[0]), timeout=30), (
        returned.service.stats.snapshot()
    )
    # Windows restart with the agent (no state on disk): the returned one scores the 60 readings it was
    # handed, the other partitions' agents all 80, each device once.
    expected = [away - WINDOW + 1] + [READINGS - WINDOW + 1] * (PARTITIONS - 1)
    for index, devices in enumerate(tracked):
        assert wait_until(
            lambda i=index, d=devices: _scored_devices(watch, i) == dict.fromkeys(d, expected[i]), timeout=30
        ), (index, _scored_devices(watch, index))
    watch.close()


def test_the_cluster_sample_config_is_valid_nats_configuration() -> None:
    binary = _nats_server()
    checked = subprocess.run(
        [binary, "-t", "-c", str(SAMPLES / "node.conf")],
        env={**os.environ, "NODE_NAME": "node-1"},
        capture_output=True,
        text=True,
        check=False,
        cwd=SAMPLES,
    )
    assert checked.returncode == 0 and "is valid" in checked.stdout + checked.stderr, checked.stderr


def _partition_of(port: int, devices: list[str]) -> dict[str, int]:
    """Where the broker's map sends each device: one reading each, watched on every partition."""
    watch = Recorder(port, ["part/#"], protocol=mqtt.MQTTv311)
    probe = publisher(port, mqtt.MQTTv311)
    for device in devices:
        probe.publish(f"sensors/{device}/telemetry", b"probe", qos=1).wait_for_publish(5)
    watch.wait_for(lambda ms: len(ms) >= len(devices), timeout=20)
    probe.loop_stop()
    watch.close()
    return {topic.split("/")[3]: int(topic.split("/")[1]) for topic, _, _ in watch.messages}


def test_a_partition_agent_killed_mid_stream_loses_none_of_its_readings(
    tiny_bundle: Path, nats_mqtt: int, tmp_path: Path
) -> None:
    """SIGKILL, no clean stop: every reading of the partition's devices ends up inside a scored window."""
    where = _partition_of(nats_mqtt, [f"kill-{i}" for i in range(12)])
    mine = sorted(device for device, part in where.items() if part == 0)
    assert mine, where
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "agent_id": "part-0",
                "bundle": str(tiny_bundle),
                "broker": {
                    "port": nats_mqtt,
                    "protocol": "3.1.1",
                    "reconnect_min_s": 1,
                    "reconnect_max_s": 2,
                },
                "topics": {"telemetry": "part/0/sensors/+/telemetry", "score": "scores/{device}"},
                "stats": {"interval_s": 0.5},
            }
        )
    )
    watch = Recorder(nats_mqtt, ["scores/#"], protocol=mqtt.MQTTv311)
    log = (tmp_path / "agent.log").open("ab")
    command = [sys.executable, "-m", "edge_agent", "run", "--config", str(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    agent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)
    readings = 160
    try:
        time.sleep(3.0)  # connected and subscribed (its session is new: nothing queued before it)
        client = publisher(nats_mqtt, mqtt.MQTTv311)
        payloads = reading_payloads(correlated_series(readings, seed=19), time.time() - readings)

        def publish(rows: range) -> None:
            for i in rows:
                for device in mine:
                    client.publish(f"sensors/{device}/telemetry", payloads[i], qos=1).wait_for_publish(5)
                time.sleep(0.01)

        publish(range(0, 80))
        watch.wait_for(lambda ms: len(ms) >= len(mine) * 20, timeout=30)  # scoring is under way
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        publish(range(80, readings))  # while no agent is connected
        agent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env=env)

        def covered(device: str) -> set[int]:
            seqs: set[int] = set()
            for topic, payload, _ in watch.messages:
                if topic == f"scores/{device}":
                    end = int(json.loads(payload)["seq"])
                    seqs.update(range(end - WINDOW + 1, end + 1))
            return seqs

        assert wait_until(
            lambda: all(set(range(WINDOW - 1, readings)) <= covered(d) for d in mine), timeout=60
        ), {d: sorted(set(range(WINDOW - 1, readings)) - covered(d))[:10] for d in mine}
        client.loop_stop()
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0
        log.close()
        watch.close()
