"""Home Assistant discovery against a real Mosquitto: documented keys, links, re-announcement."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.errors import ConfigError
from tests.conftest import correlated_series
from tests.integration.conftest import Broker, Recorder, RunningAgent, agent_config, publisher

# Keys documented for MQTT discovery of these platforms (home-assistant.io/integrations/binary_sensor.mqtt
# and sensor.mqtt, plus the shared availability/device/origin blocks). Other keys fail its schema.
COMMON_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic", "default_entity_id",
    "device", "device_class", "enabled_by_default", "encoding", "entity_category", "entity_picture",
    "expire_after", "force_update", "icon", "json_attributes_template", "json_attributes_topic", "name",
    "origin", "payload_available", "payload_not_available", "platform", "qos", "state_topic", "unique_id",
    "value_template",
}  # fmt: skip
BINARY_SENSOR_KEYS = COMMON_KEYS | {"off_delay", "payload_off", "payload_on"}
SENSOR_KEYS = COMMON_KEYS | {
    "last_reset_value_template", "options", "state_class", "suggested_display_precision",
    "unit_of_measurement",
}  # fmt: skip
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id",
    "name", "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
BINARY_SENSOR_DEVICE_CLASSES = {"problem", "safety", "running", "connectivity", "power"}  # subset used
PREFIX = "homeassistant"


def _config(tiny_bundle: Path, port: int) -> object:
    return agent_config(
        tiny_bundle,
        port,
        homeassistant={"enabled": True},
        topics={"score": "edgegan/score/{device}"},
        ingest={"max_payload_bytes": 2048, "offline_after_s": 60.0},
    )


def _discovery(recorder: Recorder, since: int = 0) -> dict[str, dict[str, object]]:
    return {t: json.loads(p) for t, p, _ in recorder.messages[since:] if t.startswith(f"{PREFIX}/")}


def _publish_readings(port: int, device: str, rows: int) -> None:
    client = publisher(port)
    start = time.time() - rows
    for i, v in enumerate(correlated_series(rows, seed=8)):
        payload = json.dumps({"ts": start + i, "values": [float(x) for x in v]})
        client.publish(f"sensors/{device}/telemetry", payload, qos=1).wait_for_publish(5)
    client.loop_stop()


def test_discovery_payloads_follow_the_documented_schema_and_point_at_our_topics(
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    watch = recorder(f"{PREFIX}/#", "edgegan/#")
    agent = start_agent(_config(tiny_bundle, broker.port))
    _publish_readings(broker.port, "pump-7", 40)
    watch.wait_for(lambda ms: len(_discovery(watch)) == 2)
    found = _discovery(watch)
    binary = found[f"{PREFIX}/binary_sensor/edgegan_edge_1_pump_7/anomaly/config"]
    sensor = found[f"{PREFIX}/sensor/edgegan_edge_1_pump_7/score/config"]
    assert set(binary) <= BINARY_SENSOR_KEYS, set(binary) - BINARY_SENSOR_KEYS
    assert set(sensor) <= SENSOR_KEYS, set(sensor) - SENSOR_KEYS
    assert binary["device_class"] in BINARY_SENSOR_DEVICE_CLASSES
    for entity in (binary, sensor):
        assert set(entity["device"]) <= DEVICE_KEYS  # type: ignore[arg-type]
        assert entity["device"]["identifiers"] == ["edgegan_pump-7"]  # type: ignore[index]
        assert entity["origin"]["name"] == "EdgeGAN"  # type: ignore[index]
        assert entity["availability_mode"] == "all"
        assert [a["topic"] for a in entity["availability"]] == [  # type: ignore[attr-defined]
            "edgegan/agent/edge-1/status",
            "edgegan/device/pump-7/availability",
        ]
    assert binary["unique_id"] != sensor["unique_id"]
    # The binary sensor's payloads are exactly what the agent publishes on the state topic.
    assert binary["state_topic"] == "edgegan/state/pump-7"
    assert {binary["payload_on"], binary["payload_off"]} == {"anomalous", "normal"}
    # The score sensor's template reads the agent's score messages.
    assert (
        sensor["state_topic"] == "edgegan/score/pump-7"
        and sensor["value_template"] == "{{ value_json.score }}"
    )
    watch.wait_for(lambda ms: any(t == "edgegan/score/pump-7" for t, _, _ in ms))
    score = next(json.loads(p) for t, p, _ in watch.messages if t == "edgegan/score/pump-7")
    assert isinstance(score["score"], float)
    # Every score message names its window's level, and the sensor exposes it as an attribute.
    threshold = agent.service.pipeline.threshold
    assert score["severity"] == threshold.severity_of(score["score"])
    assert "'severity': value_json.severity" in sensor["json_attributes_template"]
    retained = recorder(f"{PREFIX}/#")  # a late subscriber still gets them: they are retained
    retained.wait_for(lambda ms: len(ms) == 2 and all(r for _, _, r in ms))
    assert agent.service.pipeline.bundle_id in str(binary["device"])


@pytest.mark.faults
def test_discovery_and_states_are_sent_again_when_home_assistant_comes_online_and_after_a_reconnect(
    tiny_bundle: Path,
    broker: Broker,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    watch = recorder(f"{PREFIX}/#", "edgegan/state/#", "edgegan/device/#")
    start_agent(_config(tiny_bundle, broker.port))
    _publish_readings(broker.port, "fan-1", 40)
    watch.wait_for(lambda ms: len(_discovery(watch)) == 2)
    mark = len(watch.messages)
    birth = publisher(broker.port)
    birth.publish(f"{PREFIX}/status", "online", qos=1).wait_for_publish(5)
    birth.loop_stop()
    expected = {
        f"{PREFIX}/binary_sensor/edgegan_edge_1_fan_1/anomaly/config",
        f"{PREFIX}/sensor/edgegan_edge_1_fan_1/score/config",
        "edgegan/state/fan-1",
        "edgegan/device/fan-1/availability",
    }
    watch.wait_for(lambda ms: expected <= {t for t, _, _ in ms[mark:]})
    assert ("edgegan/state/fan-1", b"normal") in {(t, p) for t, p, _ in watch.messages[mark:]}

    # A broker restart without persistence forgets every retained message; the agent puts them back.
    broker.stop()
    broker.start()
    late = recorder(f"{PREFIX}/#", "edgegan/state/#", "edgegan/device/#")
    late.wait_for(lambda ms: expected <= {t for t, _, _ in ms}, timeout=30)


def test_home_assistant_needs_a_score_topic(tiny_bundle: Path) -> None:
    with pytest.raises(ConfigError, match="topics.score"):
        agent_config(tiny_bundle, 1883, homeassistant={"enabled": True})
