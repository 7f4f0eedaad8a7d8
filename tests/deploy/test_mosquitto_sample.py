"""deploy/mosquitto: a real Mosquitto loads the sample config, and its ACL keeps everyone to their topics."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.conftest import _free_port, _mosquitto
from tests.integration.test_tls import _make_pki

DEPLOY = Path(__file__).parents[2] / "deploy" / "mosquitto"
USERS = {"gw-1": "agent-secret", "pump-7": "device-secret", "operator": "op-secret"}


@pytest.fixture
def site_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    binary = _mosquitto()
    if binary is None or shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto and mosquitto_passwd are needed; .ci/run installs them")
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_pki(pki)
    passwd = tmp_path / "edgegan.passwd"
    for index, (user, password) in enumerate(USERS.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run(["mosquitto_passwd", *create, "-b", str(passwd), user, password], check=True)
    port = _free_port()
    conf = (DEPLOY / "edgegan.conf").read_text()
    conf = (
        conf.replace("/etc/mosquitto/edgegan.passwd", str(passwd))
        .replace("/etc/mosquitto/edgegan.acl", str(DEPLOY / "edgegan.acl"))
        .replace("/etc/mosquitto/certs/", f"{pki}/")
        .replace("listener 8883", f"listener {port} 127.0.0.1")
        .replace("persistence_location /var/lib/mosquitto/", f"persistence_location {tmp_path}/")
    )
    (tmp_path / "mosquitto.conf").write_text("user root\n" + conf)  # keys live in pytest's private folder
    process = subprocess.Popen(
        [binary, "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        try:
            probe = _client("pump-7", port, pki)
            probe.disconnect()
            probe.loop_stop()
            break
        except (ConnectionError, OSError):
            time.sleep(0.1)
    if process.poll() is not None:
        output = process.stdout.read().decode() if process.stdout else ""
        pytest.fail(f"mosquitto refused the sample config:\n{output}")
    yield port, pki
    process.terminate()
    process.wait(10)
    if process.stdout:
        process.stdout.close()


def _client(user: str | None, port: int, pki: Path, password: str | None = None) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
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
    site_broker: tuple[int, Path],
) -> None:
    port, pki = site_broker
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
