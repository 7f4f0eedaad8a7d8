"""The main job: data -> model -> broker -> agent -> simulated fleet with faults -> evaluation table.

Every stage runs for real and is checked: the broker must accept connections, the agent must come online
and score, the simulator must publish what it planned, the agent must stop cleanly. Any failure raises
TrainerError with the stage's name, so `edge-trainer demo` exits non-zero with one line saying where.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

from edge_agent.config import BrokerConfig
from edge_agent.simulator.faults import (
    BROKEN_CORRELATION,
    CLOCK_SKEW,
    DRIFT,
    DUPLICATE,
    LEVEL_SHIFT,
    MALFORMED,
    NAN,
    NOISE_BURST,
    SPIKE,
    STUCK,
)
from edge_agent.simulator.fleet import connect_client, plain_client
from edge_agent.simulator.run import SimulationResult, simulate
from edge_agent.simulator.scenario import Scenario
from trainer.demo.broker import find_mosquitto, free_port, start_listening, start_mosquitto
from trainer.errors import TrainerError

log = logging.getLogger(__name__)

AGENT_ID = "demo"
DEMO_KINDS = [LEVEL_SHIFT, DRIFT, STUCK, NOISE_BURST, BROKEN_CORRELATION, SPIKE]
TRANSPORT_DEMO_KINDS = [MALFORMED, NAN, DUPLICATE, CLOCK_SKEW]


@dataclass(frozen=True)
class LocalBroker:
    """A broker this process started."""

    port: int
    protocol: str  # "5" for Mosquitto, "3.1.1" for the embedded fallback
    kind: str


@contextmanager
def local_broker(folder: Path, kind: str = "auto") -> Iterator[LocalBroker]:
    """Mosquitto on a free port when installed, otherwise the embedded pure-Python broker (MQTT 3.1.1).

    `kind` is "auto", "mosquitto" or "embedded".
    """
    port = free_port()
    binary = None if kind == "embedded" else find_mosquitto()
    if kind == "mosquitto" and binary is None:
        raise TrainerError("broker: mosquitto is not installed (apt install mosquitto)")
    log_file = folder / "broker.log"
    if binary is not None:
        command, broker = None, LocalBroker(port, "5", "mosquitto")
    else:
        try:
            import amqtt  # noqa: F401
        except ImportError:
            raise TrainerError(
                "broker: neither mosquitto nor amqtt is installed "
                "(apt install mosquitto, or pip install amqtt)"
            ) from None
        command = [sys.executable, "-m", "trainer.demo.embedded_broker", "--port", str(port)]
        broker = LocalBroker(port, "3.1.1", "embedded amqtt")
    try:
        if command is None:
            process = start_mosquitto(folder, port, log_file=log_file)
        else:
            process = start_listening(command, port, log_file)
    except RuntimeError as err:
        raise TrainerError(str(err)) from None
    log.info("broker: %s on 127.0.0.1:%d (MQTT %s)", broker.kind, port, broker.protocol)
    try:
        yield broker
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


class _AgentWatch:
    """Follows the agent's status and stats topics."""

    def __init__(self, broker: BrokerConfig) -> None:
        self.online = threading.Event()
        self.stats: dict[str, object] = {}
        self._client = plain_client(broker)
        self._client.on_connect = lambda c, *_: c.subscribe(f"edgegan/agent/{AGENT_ID}/#", qos=1)
        self._client.on_message = self._on_message
        connect_client(self._client, broker)

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/status"):
            if message.payload == b"online":
                self.online.set()
            else:
                self.online.clear()
        elif message.topic.endswith("/stats"):
            with contextlib.suppress(ValueError):
                self.stats = json.loads(message.payload)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _start_agent(bundle: Path, broker: LocalBroker, folder: Path, page_port: int) -> subprocess.Popen[bytes]:
    config = folder / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "agent_id": AGENT_ID,
                "bundle": str(bundle.resolve()),
                "broker": {"port": broker.port, "protocol": broker.protocol},
                "stats": {"interval_s": 1.0},
                "status_page": {"port": page_port, "refresh_s": 2.0},
            }
        )
    )
    log_file = (folder / "agent.log").open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "edge_agent", "run", "--config", str(config)]
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    log_file.close()  # the child holds its own descriptor
    return process


def _screenshot(url: str, path: Path) -> None:
    """The status page as the fleet ends, where headless chromium is installed; never fails the demo."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        log.info("no chromium here: no screenshot of the status page")
        return
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1100,900"]
    try:
        subprocess.run(
            [browser, *flags, f"--screenshot={path}", url], capture_output=True, timeout=60, check=True
        )
        log.info("status page screenshot: %s", path)
    except (OSError, subprocess.SubprocessError) as err:
        log.warning("status page screenshot failed: %s", err)


def demo_scenario(devices: int, rate_hz: float, duration_s: float, seed: int) -> Scenario:
    """A quarter of the devices get anomalies, a few more transport faults; the rest stay clean, so the
    false alarms of healthy devices are counted over most of the run's device-hours."""
    return Scenario.model_validate(
        {
            "devices": devices,
            "rate_hz": rate_hz,
            "duration_s": duration_s,
            "seed": seed,
            "random": {
                "kinds": DEMO_KINDS,
                "per_device_hour": 3600 / duration_s * 3,
                "device_fraction": 0.25,
                "duration_s": (64 / rate_hz, 160 / rate_hz),
                "magnitude": 1.0,
            },
            "events": [
                {"device": devices - 1 - i, "kind": kind, "at_s": duration_s / 2, "duration_s": 3 / rate_hz}
                for i, kind in enumerate(TRANSPORT_DEMO_KINDS)
                if devices - 1 - i >= devices // 4
            ],
        }
    )


def run_fleet(
    bundle: Path,
    folder: Path,
    devices: int,
    rate_hz: float,
    duration_s: float,
    seed: int,
    broker_kind: str = "auto",
) -> SimulationResult:
    """Broker, agent and simulated fleet; returns the simulation and its evaluation."""
    folder.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="edgegan-broker-") as scratch,
        local_broker(Path(scratch), broker_kind) as broker,
    ):
        broker_config = BrokerConfig(port=broker.port, protocol=broker.protocol)  # type: ignore[arg-type]
        watch = _AgentWatch(broker_config)
        page_port = free_port()
        agent = _start_agent(bundle, broker, folder, page_port)
        try:
            if not watch.online.wait(60):
                raise TrainerError(f"agent: not online after 60 s (log: {folder / 'agent.log'})")
            log.info("agent: online; simulating %d devices for %.0f s", devices, duration_s)
            log.info("agent status page: http://127.0.0.1:%d/ (open it while the fleet runs)", page_port)
            scenario = demo_scenario(devices, rate_hz, duration_s, seed)
            result = simulate(
                bundle,
                broker_config,
                scenario,
                folder / "truth.jsonl",
                score_alerts=True,
                alerts_file=folder / "alerts.jsonl",
            )
            _screenshot(f"http://127.0.0.1:{page_port}/", folder / "status_page.png")
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                code = agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                code = -9
            stats = dict(watch.stats)
            watch.close()
        if code != 0:
            raise TrainerError(f"agent: exit code {code} after SIGTERM (log: {folder / 'agent.log'})")
    _check(result, stats, folder)
    return result


def _check(result: SimulationResult, stats: dict[str, object], folder: Path) -> None:
    report, evaluation = result.report, result.evaluation
    if report.published < 0.9 * report.planned_readings:
        raise TrainerError(f"simulator: published {report.published} of {report.planned_readings} readings")
    scored = int(stats.get("scored", 0))  # type: ignore[call-overload]
    if scored == 0:
        raise TrainerError(f"agent: scored nothing (stats {stats}; log: {folder / 'agent.log'})")
    if evaluation is None:
        raise TrainerError("evaluation: no result")
    figures = {
        "published": report.published,
        "publish_rate_per_s": round(report.rate_per_s, 1),
        "agent": {k: stats.get(k) for k in ("received", "scored", "alerts", "rejected", "latency_ms")},
        "evaluation": evaluation.as_dict(),
        "vetting": report.vetting,
    }
    (folder / "evaluation.json").write_text(json.dumps(figures, indent=2) + "\n")
