"""Mutual TLS with certificates the test makes: the agent connects with its client certificate only."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import correlated_series
from tests.integration.conftest import Broker, RunningAgent, agent_config, wait_until


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, valid for two days."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=edgegan-test-ca",
        cwd=folder,
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=folder,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            cwd=folder,
        )


@pytest.fixture
def tls_broker(broker: Broker, tmp_path: Path) -> Broker:
    """The test broker restarted with a TLS listener that requires client certificates."""
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_pki(pki)
    broker.stop()
    # The keys sit in pytest's private temp folder: keep mosquitto as the test's user so it can read them.
    broker.listener_options = (
        "user root\n"
        f"cafile {pki / 'ca.crt'}\ncertfile {pki / 'server.crt'}\n"
        f"keyfile {pki / 'server.key'}\nrequire_certificate true\n"
    )
    broker.start()
    return broker


def test_agent_scores_over_mutual_tls(
    tiny_bundle: Path, tls_broker: Broker, tmp_path: Path, start_agent: Callable[..., RunningAgent]
) -> None:
    pki = tmp_path / "pki"
    tls = {
        "tls_ca": str(pki / "ca.crt"),
        "tls_cert": str(pki / "client.crt"),
        "tls_key": str(pki / "client.key"),
    }
    agent = start_agent(agent_config(tiny_bundle, tls_broker.port, broker=tls))
    device = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    device.tls_set(
        ca_certs=str(pki / "ca.crt"), certfile=str(pki / "client.crt"), keyfile=str(pki / "client.key")
    )
    device.connect("127.0.0.1", tls_broker.port)
    device.loop_start()
    start = time.time() - 100
    for i, row in enumerate(correlated_series(60, seed=2)):
        device.publish("sensors/t1/telemetry", json.dumps({"ts": start + i, "values": row.tolist()}), qos=1)
    wait_until(lambda: agent.service.stats.scored >= 60 - 31)
    assert agent.service.stats.scored == 60 - 31
    device.loop_stop()


def test_plain_client_is_refused_by_the_tls_listener(tls_broker: Broker) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    with pytest.raises((OSError, ConnectionError, mqtt.WebsocketConnectionError)):
        client.connect("127.0.0.1", tls_broker.port)
        for _ in range(20):  # the TLS listener drops a plain MQTT CONNECT
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError("dropped")
