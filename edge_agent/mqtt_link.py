"""The agent's MQTT connection: session, last will, bounded inbox, publishing; credentials for every client.

Delivery: telemetry is subscribed with QoS 1 in a persistent session (MQTT 5: clean_start=False and a
session expiry on every connect; 3.1.1: clean_session=False), and acknowledged by hand only after the
service has scored it. A reading the agent received but had not processed when it died is therefore
redelivered by the broker, and readings published while the agent is away wait in its session.
Callbacks run on paho's network thread: they only enqueue, count and log, and never raise.

The network thread and the scoring loop share one GIL, and paho's own parsing takes most of it, so the
hand-over between them is kept lean: a deque with two events instead of queue.Queue, and acknowledgements
queued by the scoring loop and sent by the network thread (an ack sent from the scoring loop wakes the
network thread through a socket for every single message).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent.availability import OFFLINE, ONLINE
from edge_agent.config import AgentConfig, BrokerConfig, TopicsConfig
from edge_agent.errors import ConfigError
from edge_agent.sparkplug_topics import subscriptions as sparkplug_subscriptions

log = logging.getLogger(__name__)


@dataclass(slots=True)  # not frozen: one per message, and a frozen __init__ costs 4x this one
class RawMessage:
    """A message as received, before any decoding."""

    topic: str
    payload: bytes
    received_ts: float
    mid: int
    qos: int
    retain: bool


def configure_credentials(client: mqtt.Client, broker: BrokerConfig) -> None:
    """Username/password and TLS from the broker settings, for every paho client EdgeGAN builds."""
    if broker.username:
        client.username_pw_set(broker.username, broker.password())
    if not broker.tls_ca:
        return
    for name in ("tls_ca", "tls_cert", "tls_key"):
        path = getattr(broker, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"broker.{name}: {path} not found")
    client.tls_set(
        ca_certs=str(broker.tls_ca),
        certfile=str(broker.tls_cert) if broker.tls_cert else None,
        keyfile=str(broker.tls_key) if broker.tls_key else None,
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )


class MqttLink:
    """A connected client with an inbox; `drain` hands messages to the service loop."""

    def __init__(
        self,
        broker: BrokerConfig,
        topics: TopicsConfig,
        agent_id: str,
        inbox_size: int,
        extra_subscriptions: tuple[str, ...] = (),
    ) -> None:
        self.broker, self.topics, self.agent_id = broker, topics, agent_id
        self.extra_subscriptions = extra_subscriptions  # e.g. Home Assistant's status topic (QoS 1)
        # Told of the PUBACK of every tracked publish, on the network thread.
        self.on_acknowledged: Callable[[int], None] | None = None
        self.sessions = 0  # connections whose subscriptions the broker confirmed; a change means re-announce
        self.inbox_size = inbox_size
        self.inbox_overflow = 0  # messages taken past the bound after a stall of half a keepalive
        self._inbox: deque[RawMessage] = deque()
        self._has_items = threading.Event()
        self._has_room = threading.Event()
        self._has_room.set()
        self._stopping = False  # set by stop(): the network thread takes nothing more
        self._acks: deque[int] = deque()  # mids processed by the scoring loop, sent by the network thread
        # Half the keepalive: a network thread blocked on a full inbox cannot answer the broker's pings.
        self._full_wait_s = broker.keepalive_s / 2
        self.connected = threading.Event()
        self.connects = 0
        self.status_topic = topics.agent_status.format(agent_id=agent_id)
        self.command_filter = topics.command.format(agent_id=agent_id)
        self._command_prefix = self.command_filter[: -len("+")]  # computed once: checked on every message
        self._subscribe_mid: int | None = None
        self._client = self._make_client()
        if self.broker.protocol != "5":
            log.warning(
                "MQTT 3.1.1: a command published with the retain flag while the agent is connected arrives "
                "without it and is carried out (only MQTT 5 keeps the flag); restrict who may publish to "
                "%s with the broker's ACL, or use broker.protocol 5",
                self.command_filter,
            )

    def _make_client(self) -> mqtt.Client:
        v5 = self.broker.protocol == "5"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.broker.client_id or f"edgegan-{self.agent_id}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        client.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        configure_credentials(client, self.broker)
        client.reconnect_delay_set(self.broker.reconnect_min_s, self.broker.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        """Connect in the background; paho reconnects with backoff after any loss."""
        kwargs: dict[str, Any] = {"keepalive": self.broker.keepalive_s}
        if self.broker.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.broker.session_expiry_s
            # Asks the broker to keep at most this many unacknowledged messages in flight to us. Not every
            # broker honours it (Mosquitto 2.0.11 overshoots once acks flow), hence the blocking inbox too.
            properties.ReceiveMaximum = min(self.inbox_size, 65535)
            # Passed explicitly so paho sends the same on every reconnect, not a clean start after the first.
            kwargs.update(clean_start=False, properties=properties)
        self._client.connect_async(self.broker.host, self.broker.port, **kwargs)
        self._client.loop_start()

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, _flags: object, reason: Any, _properties: object
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        self.connects += 1
        commands: Any = 1
        if self.broker.protocol == "5":
            # Retain-as-published: a retained command published while we are connected then still carries
            # its retain flag, so it is ignored like one delivered on subscribe. (MQTT 3.1.1 cannot tell.)
            commands = SubscribeOptions(qos=1, retainAsPublished=True)
        telemetry = self.topics.telemetry
        if self.topics.shared_group:
            telemetry = f"$share/{self.topics.shared_group}/{telemetry}"  # messages keep their plain topic
        _, self._subscribe_mid = client.subscribe(
            [(telemetry, 1), (self.command_filter, commands)]
            + [(topic, 1) for topic in self.extra_subscriptions]
        )
        log.info("connected to %s:%d (connection %d)", self.broker.host, self.broker.port, self.connects)

    def _on_subscribe(
        self, client: mqtt.Client, _userdata: object, mid: int, reasons: list[Any], _properties: object
    ) -> None:
        # Online only once the broker confirms the subscriptions: a reading published after `online` is
        # then never missed, even on the very first connection, before the session holds anything.
        if mid != self._subscribe_mid:
            return
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("broker refused the subscriptions: %s (check its ACL)", ", ".join(refused))
            return
        client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        self.sessions += 1
        self.connected.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: object, _flags: object, reason: Any, _properties: object
    ) -> None:
        self.connected.clear()
        log.warning("disconnected from broker: %s; reconnecting with backoff", reason)

    def _wait_for_room(self) -> bool:
        """True once the scoring loop made room (or the link is stopping); False after half a keepalive.
        Waits in short slices so that a stop never waits behind it."""
        deadline = time.monotonic() + self._full_wait_s
        while len(self._inbox) >= self.inbox_size and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._has_room.clear()
            if len(self._inbox) >= self.inbox_size:
                self._has_room.wait(min(left, 0.5))
        return True

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if self._stopping:
            return  # unacknowledged: the broker delivers it again to the next session
        self._send_acks()
        raw = RawMessage(
            message.topic, bytes(message.payload), time.time(), message.mid, message.qos, bool(message.retain)
        )
        if len(self._inbox) >= self.inbox_size:
            # A full inbox blocks the network thread, so the socket stops being read and TCP pushes back on
            # the broker, which keeps the messages. A scoring loop stuck for longer than the wait gets the
            # message anyway, past the bound: dropping it unacknowledged lost it (an MQTT 5 broker resends
            # only on a reconnect, by when newer readings have passed it), and the broker's own flow control
            # (Receive Maximum, or its in-flight limit under 3.1.1) keeps the overshoot small.
            if not self._wait_for_room():
                self.inbox_overflow += 1
            if self._stopping:
                return
        self._inbox.append(raw)
        if not self._has_items.is_set():
            self._has_items.set()

    def _on_publish(
        self, _client: mqtt.Client, _userdata: object, mid: int, reason: Any, _properties: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker refused publish %d: %s (check its ACL)", mid, reason)
        if self.on_acknowledged is not None:
            self.on_acknowledged(mid)

    def _send_acks(self) -> None:
        if not self._acks:
            return  # the common case on the network thread: checked without raising IndexError
        take = self._acks.popleft
        while True:
            try:
                mid = take()
            except IndexError:
                return
            self._client.ack(mid, 1)

    def is_command(self, topic: str) -> str | None:
        """The command name when `topic` is on the command filter, else None."""
        if not topic.startswith(self._command_prefix):
            return None
        name = topic[len(self._command_prefix) :]
        return None if "/" in name else name

    def drain(self, max_items: int, wait_s: float) -> list[RawMessage]:
        """Up to `max_items` messages, waiting at most `wait_s` for the first."""
        if not self._inbox:
            self._send_acks()  # nothing arriving, so the network thread is not sending them
            self._has_items.clear()
            if not self._inbox:  # checked again after clearing, so a message appended meanwhile is not missed
                self._has_items.wait(wait_s)
        items: list[RawMessage] = []
        take = self._inbox.popleft
        while len(items) < max_items:
            try:
                items.append(take())
            except IndexError:
                break
        if items and not self._has_room.is_set():
            self._has_room.set()
        return items

    def inbox_depth(self) -> int:
        """Messages received and not yet drained (a backlog the scoring loop has still to work through)."""
        return len(self._inbox)

    def ack(self, message: RawMessage) -> None:
        """Acknowledge a processed QoS 1 message so the broker forgets it (sent on the next occasion)."""
        if message.qos == 1:
            self._acks.append(message.mid)

    def publish(self, topic: str, payload: str | bytes, qos: int = 0, retain: bool = False) -> None:
        """Queue a message; paho keeps QoS 1 messages until acknowledged, across reconnects."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def publish_tracked(self, topic: str, payload: str | bytes, qos: int, retain: bool) -> int | None:
        """Publish and return the message id that `on_acknowledged` will report; None if paho refused it."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("publish to %s not queued: %s", topic, mqtt.error_string(info.rc))
            return None
        return int(info.mid)

    def stop(self) -> None:
        """Clean stop: pending acks, retained offline status, then disconnect (no last will is sent).

        Messages still arriving are left unacknowledged for the next session, and a network thread waiting
        for room in a full inbox is released: nothing drains the inbox any more, and joining a thread that
        waits half a keepalive per message held the stop for minutes after a large backlog.
        """
        self._stopping = True
        self._has_room.set()
        self._send_acks()
        if self.connected.is_set():
            info = self._client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            info.wait_for_publish(timeout=3)
        self._client.disconnect()
        self._client.loop_stop()


def open_link(config: AgentConfig) -> MqttLink:
    """The agent's link with every subscription its config asks for."""
    extra: tuple[str, ...] = (config.homeassistant.status_topic,) if config.homeassistant.enabled else ()
    if config.sparkplug.enabled:
        extra += sparkplug_subscriptions(config.sparkplug)
    return MqttLink(config.broker, config.topics, config.agent_id, config.ingest.inbox_size, extra)
