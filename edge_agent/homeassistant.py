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

from edge_agent.availability import OFFLINE, ONLINE
from edge_agent.config import AgentConfig
from edge_agent.decision import ANOMALOUS, NORMAL

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
