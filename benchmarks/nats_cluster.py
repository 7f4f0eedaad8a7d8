"""A NATS cluster on loopback for the fleet benchmark: MQTT 3.1.1 and JetStream on every node with the
deploy sample's MQTT session settings (deploy/nats/node.conf), and its device-partition map
(deploy/nats/partitions.conf) at the benchmark's partition count."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from trainer.demo.broker import free_ports

SAMPLE_MAP = Path(__file__).resolve().parents[1] / "deploy" / "nats" / "partitions.conf"
SAMPLE_NODE = SAMPLE_MAP.with_name("node.conf")


def sample_mqtt_settings() -> str:
    """The sample node's MQTT session settings (ack_wait, max_ack_pending), which the benchmark runs."""
    text = SAMPLE_NODE.read_text()
    settings = re.findall(r"^\s*((?:ack_wait|max_ack_pending):\s*\S+)\s*$", text, flags=re.MULTILINE)
    if len(settings) != 2:
        raise RuntimeError(f"{SAMPLE_NODE}: expected ack_wait and max_ack_pending, found {settings}")
    return "\n ".join(settings)


def partition_map(partitions: int) -> str:
    """The sample's mapping block with its partition count set to `partitions`."""
    text = SAMPLE_MAP.read_text()
    mapped, found = re.subn(r"partition\(\d+,", f"partition({partitions},", text)
    if found != 1:
        raise RuntimeError(f"{SAMPLE_MAP}: expected one partition(...) mapping, found {found}")
    return mapped


def _mqtt_ready(port: int) -> bool:
    """JetStream backs every MQTT session: a node takes MQTT clients only once the cluster has a leader."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    try:
        return (
            client.connect("127.0.0.1", port, keepalive=5) == 0
            and client.loop(timeout=2.0) == 0
            and (client.is_connected())
        )
    except OSError:
        return False
    finally:
        client.disconnect()


@contextmanager
def nats_cluster(folder: Path, nodes: int = 3, partitions: int = 3) -> Iterator[list[int]]:
    """Start `nodes` clustered nats-servers; yield their MQTT ports once every node takes MQTT clients."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
    ports = free_ports(3 * nodes)
    clients, routes, mqtt_ports = ports[:nodes], ports[nodes : 2 * nodes], ports[2 * nodes :]
    (folder / "partitions.conf").write_text(partition_map(partitions))
    route_list = ", ".join(f"nats://127.0.0.1:{port}" for port in routes)
    processes = []
    try:
        for index in range(nodes):
            conf = folder / f"nats-{index}.conf"
            cluster = (
                f"cluster {{ name: edgegan, listen: 127.0.0.1:{routes[index]}, routes: [{route_list}] }}\n"
            )
            conf.write_text(
                f"server_name: node-{index}\nlisten: 127.0.0.1:{clients[index]}\n"
                f'jetstream {{ store_dir: "{folder / f"js-{index}"}" }}\n'
                f"mqtt {{ listen: 127.0.0.1:{mqtt_ports[index]}\n {sample_mqtt_settings()} }}\n"
                + (cluster if nodes > 1 else "")
                + "include ./partitions.conf\n"
            )
            log = (folder / f"nats-{index}.log").open("wb")
            processes.append(
                subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
            )
            log.close()
        deadline = time.monotonic() + 60
        waiting = set(mqtt_ports)
        while waiting and time.monotonic() < deadline:
            waiting = {port for port in waiting if not _mqtt_ready(port)}
            time.sleep(0.5)
        if waiting:
            raise RuntimeError(f"NATS nodes on MQTT ports {sorted(waiting)} did not take clients within 60 s")
        yield mqtt_ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=15)
