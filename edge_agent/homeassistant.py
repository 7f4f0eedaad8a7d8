"""Home Assistant MQTT discovery: per device a binary sensor (anomaly state) and a sensor (score).

The score sensor carries the threshold and the window's severity level as attributes, so an automation can
page on `critical` without knowing the bundle's numbers.

Both are linked to two availability topics with `availability_mode: all`: the agent's status (its last
will turns everything unavailable when the agent dies) and the device's own availability (a silent device
shows unavailable rather than a stale state). Discovery configs are retained; the agent re-sends them, and
the retained states, whenever Home Assistant announces itself `online` and after every reconnect, since a
broker restart without persistence forgets retained messages.
"""

from __future__ import annotations

import json
import logging

from edge_agent.availability import OFFLINE, ONLINE, DeviceAvailability
from edge_agent.config import AgentConfig
from edge_agent.decision import ANOMALOUS, NORMAL
from edge_agent.model_set import ModelSet
from edge_agent.publisher import Publisher

log = logging.getLogger(__name__)

ORIGIN = {"name": "EdgeGAN"}


def discovery_messages(config: AgentConfig, device: str, bundle_id: str) -> list[tuple[str, str]]:
    """(topic, JSON payload) for the device's two entities, to be published retained."""
    topics, prefix = config.topics, config.homeassistant.discovery_prefix
    node = f"edgegan_{config.agent_id}_{device}".replace("-", "_")
    availability = [
        {"topic": topic, "payload_available": ONLINE, "payload_not_available": OFFLINE}
        for topic in (
            topics.agent_status.format(agent_id=config.agent_id),
            topics.device_availability.format(device=device),
        )
    ]
    ha_device = {
        "identifiers": [f"edgegan_{device}"],
        "name": device,
        "manufacturer": "EdgeGAN",
        "model": f"GAN anomaly detector ({bundle_id})",
    }
    common = {"availability": availability, "availability_mode": "all", "device": ha_device, "origin": ORIGIN}
    anomaly = {
        "name": "Anomaly",
        "unique_id": f"{node}_anomaly",
        "state_topic": topics.state.format(device=device),
        "payload_on": ANOMALOUS,
        "payload_off": NORMAL,
        "device_class": "problem",
        **common,
    }
    assert topics.score is not None, "config validation requires topics.score with Home Assistant"
    score = {
        "name": "Anomaly score",
        "unique_id": f"{node}_score",
        "state_topic": topics.score.format(device=device),
        "value_template": "{{ value_json.score }}",
        "state_class": "measurement",
        "suggested_display_precision": 3,
        "json_attributes_topic": topics.score.format(device=device),
        "json_attributes_template": (
            "{{ {'threshold': value_json.threshold, 'severity': value_json.severity} | tojson }}"
        ),
        **common,
    }
    return [
        (f"{prefix}/binary_sensor/{node}/anomaly/config", json.dumps(anomaly)),
        (f"{prefix}/sensor/{node}/score/config", json.dumps(score)),
    ]


class Announcer:
    """Announces each device with usable readings once, and everything again when Home Assistant (or the
    broker, after a reconnect) may have lost the retained configs and states."""

    def __init__(
        self,
        config: AgentConfig,
        publisher: Publisher,
        models: ModelSet,
        availability: DeviceAvailability | None,
    ) -> None:
        self.config, self.publisher, self.models, self.availability = config, publisher, models, availability
        self.announced: set[str] = set()

    def device_seen(self, device: str) -> None:
        """A device with usable readings: announced the first time."""
        if device not in self.announced:
            self._announce(device)

    def forget(self, device: str) -> None:
        """A device the agent dropped is announced afresh if it comes back."""
        self.announced.discard(device)

    def on_status(self, payload: bytes) -> None:
        """Home Assistant's status topic: `online` means it restarted and wants everything again."""
        if payload.strip() == b"online":
            log.info("Home Assistant is online: re-announcing %d devices", len(self.announced))
            self.announce_all()

    def announce_all(self) -> None:
        """Discovery configs, then the retained states they point at, for every device announced."""
        availability = self.availability.states() if self.availability is not None else {}
        for device in sorted(self.announced):
            self._announce(device)
            if device in availability:
                self.publisher.availability(device, availability[device])
            self.publisher.state(device, self.models.for_device(device).decider.state_of(device))

    def _announce(self, device: str) -> None:
        bundle_id = self.models.for_device(device).bundle_id
        for topic, payload in discovery_messages(self.config, device, bundle_id):
            self.publisher.link.publish(topic, payload, qos=1, retain=True)
        self.announced.add(device)
