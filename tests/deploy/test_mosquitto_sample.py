"""deploy/mosquitto: a real Mosquitto loads the sample config, and its ACL keeps everyone to their topics."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.integration.test_tls import _make_pki
from trainer.demo.broker import find_mosquitto, free_port

DEPLOY = Path(__file__).parents[2] / "deploy" / "mosquitto"
USERS = {"gw-1": "agent-secret", "pump-7": "device-secret", "operator": "op-secret"}


@dataclass
class SiteBroker:
    """Mosquitto on the sample config (paths pointed at the test's folder), restartable on the same port."""

    config: Path
    port: int
    pki: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = find_mosquitto()
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, "-c", str(self.config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                probe = _client("pump-7", self.port, self.pki)
                probe.disconnect()
                probe.loop_stop()
                return
            except (ConnectionError, OSError):
                time.sleep(0.1)
        output = self.process.stdout.read().decode() if self.process.stdout else ""
        pytest.fail(f"mosquitto refused the sample config:\n{output}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        self.process.wait(10)
        if self.process.stdout:
            self.process.stdout.close()
        self.process = None


def _site_config(tmp_path: Path, autosave_interval: int | None = None) -> tuple[Path, int, Path]:
    """The sample config with the test's password file, ACL, certificates, port and persistence folder."""
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_pki(pki)
    passwd = tmp_path / "edgegan.passwd"
    for index, (user, password) in enumerate(USERS.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run(["mosquitto_passwd", *create, "-b", str(passwd), user, password], check=True)
    port = free_port()
    conf = (DEPLOY / "edgegan.conf").read_text()
    conf = (
        conf.replace("/etc/mosquitto/edgegan.passwd", str(passwd))
        .replace("/etc/mosquitto/edgegan.acl", str(DEPLOY / "edgegan.acl"))
        .replace("/etc/mosquitto/certs/", f"{pki}/")
        .replace("listener 8883", f"listener {port} 127.0.0.1")
        .replace("persistence_location /var/lib/mosquitto/", f"persistence_location {tmp_path}/")
    )
    if autosave_interval is not None:
        conf = conf.replace("autosave_interval 1\n", f"autosave_interval {autosave_interval}\n")
    config = tmp_path / "mosquitto.conf"
    config.write_text("user root\n" + conf)  # keys live in pytest's private folder
    return config, port, pki


@pytest.fixture
def site_broker(tmp_path: Path) -> Iterator[SiteBroker]:
    if find_mosquitto() is None or shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto and mosquitto_passwd are needed; .ci/run installs them")
    broker = SiteBroker(*_site_config(tmp_path))
    broker.start()
    yield broker
    broker.stop()


def _client(
    user: str | None,
    port: int,
    pki: Path,
    password: str | None = None,
    client_id: str = "",
    persistent: bool = False,
    on_message: Callable[[mqtt.Client, object, mqtt.MQTTMessage], None] | None = None,
) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, client_id=client_id
    )
    client.tls_set(ca_certs=str(pki / "ca.crt"))
    if user is not None:
        client.username_pw_set(user, password if password is not None else USERS[user])
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    if on_message is not None:  # set before CONNACK: a resumed session's queue arrives right after it
        client.on_message = on_message
    if persistent:  # the session and its queue outlive the connection, as the agent's do
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=properties)
    else:
        client.connect("127.0.0.1", port)
    client.loop_start()
    if not connected.wait(5) or refused:
        client.loop_stop()
        raise ConnectionError(refused[0] if refused else "no CONNACK")
    return client


class _Inbox:
    def __init__(self, client: mqtt.Client, *topics: str) -> None:
        self.topics: list[str] = []
        subscribed = threading.Event()
        client.on_message = lambda _c, _u, m: self.topics.append(m.topic)
        client.on_subscribe = lambda *_: subscribed.set()
        client.subscribe([(t, 1) for t in topics])
        assert subscribed.wait(5)


def test_sample_config_authenticates_and_the_acl_keeps_everyone_to_their_topics(
    site_broker: SiteBroker,
) -> None:
    port, pki = site_broker.port, site_broker.pki
    with pytest.raises(ConnectionError):
        _client(None, port, pki)  # anonymous
    with pytest.raises(ConnectionError):
        _client("pump-7", port, pki, password="wrong")
    agent, device, operator = (_client(user, port, pki) for user in ("gw-1", "pump-7", "operator"))
    agent_inbox = _Inbox(agent, "sensors/+/telemetry", "edgegan/agent/gw-1/cmd/#")
    operator_inbox = _Inbox(operator, "edgegan/#")
    for client, topic in [
        (device, "sensors/pump-7/telemetry"),  # allowed: its own telemetry
        (device, "sensors/pump-8/telemetry"),  # denied: another device's
        (device, "edgegan/agent/gw-1/cmd/reload"),  # denied: devices cannot command the agent
        (agent, "edgegan/agent/gw-1/cmd/reload"),  # denied: nor can the agent itself
        (operator, "edgegan/agent/gw-1/cmd/reload"),  # allowed
        (agent, "edgegan/alert/pump-7"),  # allowed
        (agent, "edgegan/agent/gw-2/status"),  # denied: another agent's status
        (agent, "edgegan/agent/gw-1/status"),  # allowed
    ]:
        client.publish(topic, b"{}", qos=1).wait_for_publish(5)
    time.sleep(1.0)
    assert sorted(agent_inbox.topics) == ["edgegan/agent/gw-1/cmd/reload", "sensors/pump-7/telemetry"]
    assert sorted(operator_inbox.topics) == [
        "edgegan/agent/gw-1/cmd/reload",
        "edgegan/agent/gw-1/status",
        "edgegan/alert/pump-7",
    ]
    for client in (agent, device, operator):
        client.disconnect()
        client.loop_stop()


QUEUED = 3000


def _queued_after_crash(broker: SiteBroker) -> int:
    """Readings queued for a paused agent's persistent session that survive the broker's kill -9."""
    agent = _client("gw-1", broker.port, broker.pki, client_id="gw-1-agent", persistent=True)
    _Inbox(agent, "sensors/+/telemetry")
    agent.disconnect()
    agent.loop_stop()
    device = _client("pump-7", broker.port, broker.pki)
    infos = [device.publish("sensors/pump-7/telemetry", f'{{"seq": {i}}}', qos=1) for i in range(QUEUED)]
    for info in infos:
        info.wait_for_publish(10)  # every reading acknowledged by the broker
    device.disconnect()
    device.loop_stop()
    time.sleep(2.5)  # more than the sample's autosave_interval
    broker.stop(signal.SIGKILL)
    broker.start()
    received: set[str] = set()
    agent = _client(
        "gw-1",
        broker.port,
        broker.pki,
        client_id="gw-1-agent",
        persistent=True,
        on_message=lambda _c, _u, m: received.add(m.payload.decode()),
    )
    deadline = time.monotonic() + 10
    while len(received) < QUEUED and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    agent.disconnect()
    agent.loop_stop()
    return len(received)


@pytest.mark.faults
def test_sample_config_keeps_acknowledged_readings_through_a_broker_kill_9(site_broker: SiteBroker) -> None:
    assert _queued_after_crash(site_broker) == QUEUED


def test_at_mosquittos_default_autosave_a_kill_9_loses_queued_readings(tmp_path: Path) -> None:
    """The contrast the README states: without the sample's autosave_interval, a crash loses the queue."""
    broker = SiteBroker(*_site_config(tmp_path, autosave_interval=1800))
    broker.start()
    try:
        assert _queued_after_crash(broker) < QUEUED // 2
    finally:
        broker.stop()
