"""The agent as a Sparkplug B primary host application: its STATE message (specification 3.0).

Edge nodes configured with a primary host id publish only while `spBv1.0/STATE/{host_id}` (retained) says
that host is online, and stop when it goes offline, so a plant whose nodes name the agent as primary host
sends it nothing without this. The state has its own MQTT connection: a connection has one will, and the
agent's own carries its status topic; here the will is the STATE death, `{"online": false, "timestamp"}`,
with the timestamp of the birth it ends (as the specification asks). Both connections end with the
process; if only the telemetry connection drops, nodes keep publishing for the reconnect to find (QoS 0
data published meanwhile is lost, as it would be for any host).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import BrokerConfig
from edge_agent.mqtt_link import configure_credentials
from edge_agent.sparkplug_topics import NAMESPACE

log = logging.getLogger(__name__)


def state_topic(host_id: str) -> str:
    """Where a primary host's state lives."""
    return f"{NAMESPACE}/STATE/{host_id}"


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    """The specification's STATE body: JSON, UTF-8."""
    return json.dumps({"online": online, "timestamp": timestamp_ms}).encode()


class HostState:
    """Keeps `spBv1.0/STATE/{host_id}` online while the agent serves; offline on stop or by will."""

    def __init__(self, broker: BrokerConfig, agent_id: str, host_id: str) -> None:
        self.topic = state_topic(host_id)
        self.timestamp_ms = int(time.time() * 1000)  # of this session's birth, repeated by its death
        self.births = 0
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"edgegan-{agent_id}-sparkplug-host",
            protocol=mqtt.MQTTv5 if broker.protocol == "5" else mqtt.MQTTv311,
        )
        self._client.will_set(self.topic, state_payload(False, self.timestamp_ms), qos=1, retain=True)
        configure_credentials(self._client, broker)
        self._client.reconnect_delay_set(broker.reconnect_min_s, broker.reconnect_max_s)
        self._client.on_connect = self._on_connect
        self._broker = broker

    def start(self) -> None:
        """Connect in the background; each (re)connection publishes the birth again."""
        self._client.connect_async(self._broker.host, self._broker.port, keepalive=self._broker.keepalive_s)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if reason.is_failure:
            log.error("Sparkplug host state: broker refused the connection: %s", reason)
            return
        client.publish(self.topic, state_payload(True, self.timestamp_ms), qos=1, retain=True)
        self.births += 1
        log.info("Sparkplug primary host online on %s", self.topic)

    def stop(self) -> None:
        """Offline (retained) before leaving, so nodes stop at once rather than at the keepalive's end."""
        if self._client.is_connected():
            info = self._client.publish(
                self.topic, state_payload(False, self.timestamp_ms), qos=1, retain=True
            )
            info.wait_for_publish(timeout=3)
        self._client.disconnect()
        self._client.loop_stop()
