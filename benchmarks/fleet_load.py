"""Fleet load test: thousands of simulated devices, several sharded agents, one broker.

Usage: python -m benchmarks.fleet_load [--bundle runs/demo/bundle] [--devices 2000] [--rate 1]
                                       [--agents 4] [--duration 60]
Starts Mosquitto, N agent processes (`shard: {index: i, count: N}`, score topic on), and one simulator
process publishing clean streams. A subscriber times every score message against the reading's own
timestamp (publish-to-decision latency). At the end each agent's stats tell which devices it scored.
Reports readings/s scored, latency percentiles, the fan-out cost (telemetry each agent received and
dropped as another shard's), and checks that every device was scored by exactly one agent.
Writes benchmarks/results/fleet_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.environment import write_result
from trainer.fleet_demo import local_broker

REPO = Path(__file__).resolve().parents[1]


class ScoreWatch:
    """Every agent's score and stats messages: latency per score, the latest stats per agent."""

    def __init__(self, port: int) -> None:
        self.latencies: list[float] = []
        self.scored_by: dict[str, set[str]] = {}
        self.stats: dict[str, dict[str, object]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(
            [("edgegan/score/+", 0), ("edgegan/agent/+/stats", 0)]
        )
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert ready.wait(10), "score watcher got no SUBACK"

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        body = json.loads(message.payload)
        with self._lock:
            if message.topic.endswith("/stats"):
                self.stats[message.topic.split("/")[2]] = body
                return
            self.latencies.append(now - float(body["ts"]))
            self.scored_by.setdefault(str(body["device"]), set()).add(str(body["agent_id"]))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _start_agents(bundle: Path, port: int, count: int, folder: Path) -> list[subprocess.Popen[bytes]]:
    processes = []
    for index in range(count):
        config = folder / f"agent-{index}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "agent_id": f"gw-{index}",
                    "bundle": str(bundle.resolve()),
                    "broker": {"port": port},
                    "shard": {"index": index, "count": count},
                    "topics": {"score": "edgegan/score/{device}"},
                    "stats": {"interval_s": 2.0, "max_devices_reported": 1_000_000},
                }
            )
        )
        log = (folder / f"agent-{index}.log").open("wb")
        command = [sys.executable, "-m", "edge_agent", "run", "--config", str(config)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env))
        log.close()
    return processes


def run(bundle: Path, devices: int, rate: float, agents: int, duration: float) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory() as scratch_name,
        local_broker(Path(scratch_name), "mosquitto") as broker,
    ):
        scratch = Path(scratch_name)
        watch = ScoreWatch(broker.port)
        processes = _start_agents(bundle, broker.port, agents, scratch)
        deadline = time.time() + 60
        while len(watch.stats) < agents and time.time() < deadline:
            time.sleep(0.5)
        assert len(watch.stats) == agents, f"only {len(watch.stats)} of {agents} agents reported"
        simulator = [
            sys.executable, "-m", "edge_agent", "simulate", "--bundle", str(bundle),
            "--broker", f"mqtt://127.0.0.1:{broker.port}", "--devices", str(devices), "--rate", str(rate),
            "--duration", str(duration), "--inject", "none", "--seed", "3",
        ]  # fmt: skip
        started = time.time()
        published = subprocess.run(simulator, capture_output=True, text=True, check=True)
        sim_seconds = time.time() - started
        time.sleep(5.0)  # the last windows and a stats round
        window = json.loads((bundle / "bundle.json").read_text())["window_len"]
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        time.sleep(0.5)
        watch.close()
    latencies = np.asarray(watch.latencies)
    stats = watch.stats
    per_agent = {
        agent: {
            "scored": s["scored"],
            "received": s["received"],
            "other_shards": s["other_shards"],
            "devices": s["devices"],
            "receive_to_decision_ms": s["latency_ms"],
            "rejected": s["rejected"],
            "inbox_overflow": s["inbox_overflow"],
        }
        for agent, s in sorted(stats.items())
    }
    owners = {device: sorted(agents_) for device, agents_ in watch.scored_by.items()}
    twice = sorted(d for d, a in owners.items() if len(a) > 1)
    expected_scores = devices * (int(duration * rate) - window + 1)
    total_scored = sum(int(s["scored"]) for s in stats.values())  # type: ignore[call-overload]
    return {
        "devices": devices,
        "rate_hz": rate,
        "agents": agents,
        "duration_s": duration,
        "simulator": published.stderr.strip().splitlines()[-1] if published.stderr.strip() else "",
        "simulator_seconds": round(sim_seconds, 1),
        "offered_readings_per_s": devices * rate,
        "scored_total": total_scored,
        "scored_expected": expected_scores,
        "scored_per_s": round(total_scored / duration, 1),
        "devices_scored": len(owners),
        "devices_scored_by_more_than_one_agent": twice[:20],
        "every_device_scored_by_exactly_one_agent": len(owners) == devices and not twice,
        "publish_to_decision_ms": {
            f"p{q}": round(float(np.percentile(latencies, q)) * 1e3, 1) for q in (50, 95, 99)
        }
        if latencies.size
        else {},
        "per_agent": per_agent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, default=REPO / "runs" / "demo" / "bundle")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=1.0)
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()
    report = run(args.bundle, args.devices, args.rate, args.agents, args.duration)
    path = write_result("fleet_load", report)
    print(json.dumps({k: v for k, v in report.items() if k != "per_agent"}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
