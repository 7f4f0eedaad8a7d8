"""`edge-agent simulate`: a fleet (or a CSV replay) on a broker, optionally scored against the alerts."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt

from edge_agent.bundle import load_bundle
from edge_agent.config import BrokerConfig, TopicsConfig
from edge_agent.errors import DataError, EdgeAgentError
from edge_agent.routing import alert_filter, telemetry_topic
from edge_agent.simulator.evaluate import Evaluation, evaluate
from edge_agent.simulator.fleet import (
    Fleet,
    FleetReport,
    connect_client,
    connect_publisher,
    finish_publishing,
    plain_client,
    write_truth_file,
)
from edge_agent.simulator.scenario import Scenario
from edge_agent.tabular import read_table

log = logging.getLogger(__name__)


class AlertCollector:
    """Subscribes to the agent's alerts and logs each as it comes: the live view of a run."""

    def __init__(self, broker: BrokerConfig, topic_filter: str) -> None:
        self.alerts: list[dict[str, object]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self._client = plain_client(broker)
        self._client.on_connect = lambda client, *_: client.subscribe(topic_filter, qos=1)
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.on_message = self._on_message
        connect_client(self._client, broker)
        if not subscribed.wait(10):  # alerts published before the SUBACK would be missed
            self.close()
            raise EdgeAgentError(f"no subscription to {topic_filter} confirmed by the broker within 10 s")

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            alert = json.loads(message.payload)
        except ValueError:
            return
        if not isinstance(alert, dict):
            return
        with self._lock:
            self.alerts.append(alert)
        top = alert.get("top_channels") or [{}]
        log.info(
            "ALERT %-5s %s score %.2f (threshold %.2f) top channel %s",
            alert.get("type"),
            alert.get("device"),
            float(alert.get("score", 0.0)),
            float(alert.get("threshold", 0.0)),
            top[0].get("channel", "?") if isinstance(top[0], dict) else "?",
        )

    def close(self) -> list[dict[str, object]]:
        """Stop listening; the alerts received."""
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            return list(self.alerts)


@dataclass
class SimulationResult:
    """A finished run."""

    report: FleetReport
    evaluation: Evaluation | None


def simulate(
    bundle_dir: Path,
    broker: BrokerConfig,
    scenario: Scenario,
    truth_file: Path | None = None,
    score_alerts: bool = False,
    settle_s: float | None = None,
    stop: threading.Event | None = None,
    alerts_file: Path | None = None,
    topics: TopicsConfig | None = None,
) -> SimulationResult:
    """Publish the scenario in real time; with `score_alerts`, collect the agent's alerts and evaluate.
    `topics`: the agent's (default: the agent's defaults), so a fleet follows an agent with custom topics."""
    topics = topics or TopicsConfig()
    bundle = load_bundle(bundle_dir)
    fleet = Fleet(bundle, scenario, topics=topics)
    log.info(
        "simulating %d devices at %.2f Hz for %.0f s, %d faults planned",
        scenario.devices,
        scenario.rate_hz,
        scenario.duration_s,
        len(fleet.injections),
    )
    collector = AlertCollector(broker, alert_filter(topics.alert)) if score_alerts else None
    client = connect_publisher(broker, client_id=f"edgegan-sim-{scenario.seed}-{int(time.time())}")
    truth_out = write_truth_file(truth_file) if truth_file is not None else None
    try:
        report = fleet.run(client, scenario.duration_s, stop=stop, truth_out=truth_out)
    finally:
        if truth_out is not None:
            truth_out.close()
        finish_publishing(client, fleet.last_info)
    log.info(
        "published %d messages in %.1f s (%.0f/s, worst lag %.3f s)",
        report.published,
        report.seconds,
        report.rate_per_s,
        report.max_lag_s,
    )
    if collector is None:
        return SimulationResult(report, None)
    window_s = bundle.manifest.window_len / scenario.rate_hz
    time.sleep(settle_s if settle_s is not None else min(5.0, window_s))  # alerts for the last readings
    alerts = collector.close()
    if alerts_file is not None:
        alerts_file.parent.mkdir(parents=True, exist_ok=True)
        alerts_file.write_text("".join(json.dumps(alert) + "\n" for alert in alerts))
    device_hours = scenario.devices * scenario.duration_s / 3600.0
    names = [scenario.device_name(i) for i in range(scenario.devices)]
    evaluation = evaluate(report.truth, alerts, device_hours, grace_s=window_s, devices=names)
    return SimulationResult(report, evaluation)


def replay_csv(
    path: Path,
    broker: BrokerConfig,
    device: str,
    speed: float,
    columns: list[str] | None = None,
    topics: TopicsConfig | None = None,
) -> FleetReport:
    """Publish a CSV's rows as one device's telemetry at the file's own pace, `speed` times faster.

    Timestamps are the send times, so the agent's stale/future checks hold at any speed; rows without a
    timestamp column are sent one second apart (divided by `speed`).
    """
    if speed <= 0:
        raise DataError(f"--speed {speed}: must be positive")
    table = read_table(path, columns)
    rows = len(table.values)
    if rows == 0:
        raise DataError(f"{path}: no rows to replay")
    left_out = table.left_out
    log.info(
        "replay %s: publishing %d rows as device %s with channels %s%s",
        path,
        rows,
        device,
        ", ".join(table.channels),
        f"; numeric columns left out: {', '.join(left_out)}" if left_out else "",
    )
    if table.timestamps is not None:
        offsets = (table.timestamps - table.timestamps[0]) / speed
    else:
        offsets = [i / speed for i in range(rows)]
    client = connect_publisher(broker, client_id=f"edgegan-replay-{device}-{int(time.time())}")
    topic = telemetry_topic((topics or TopicsConfig()).telemetry, device)
    began = time.time()
    max_lag, published = 0.0, 0
    last = None
    try:
        for index in range(rows):
            due = began + float(offsets[index])
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            max_lag = max(max_lag, time.time() - due)
            values = {name: float(v) for name, v in zip(table.channels, table.values[index], strict=True)}
            if any(v != v for v in values.values()):  # empty cells: a device would not send a hole
                continue
            body = {"ts": time.time(), "seq": index, "values": values}
            last = client.publish(topic, orjson.dumps(body), qos=1)
            published += 1
    finally:
        finish_publishing(client, last)
    if published < rows:
        log.warning(
            "replay %s: %d of %d rows had an empty cell and were not published", path, rows - published, rows
        )
    return FleetReport(1, time.time() - began, published, rows, max_lag)
