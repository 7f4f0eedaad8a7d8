"""Fleet load test: thousands of simulated devices, several agents, one broker or a partitioning cluster.

Usage: python -m benchmarks.fleet_load [--bundle runs/demo/bundle] [--devices 2000] [--rate 1]
                                       [--agents 4] [--duration 60] [--broker mosquitto|nats-cluster]
                                       [--kill AFTER_S DOWN_S]
`mosquitto`: one Mosquitto, N agent processes that all receive all telemetry and keep their shard
(`shard: {index: i, count: N}`). `nats-cluster`: three NATS nodes clustered on loopback (MQTT 3.1.1,
JetStream), the subject mapping of deploy/nats/partitions.conf at N partitions, agent i on node i mod 3
subscribed to its partition only. Score topics on; one simulator process publishes clean streams.
A subscriber times every score message against the reading's own timestamp (publish-to-decision
latency). At the end each agent's stats tell which devices it scored. Reports readings/s scored, latency
percentiles, what each agent received (and, sharded, dropped as another shard's), and checks that every
device was scored by exactly one agent, and how many readings lie in no scored window (per device, from
the score messages: a reading lost anywhere shows as a gap). `--kill` SIGKILLs agent 0 mid-run and starts
it again: its partition's readings wait in its session. Writes benchmarks/results/fleet_load.json
(fleet_load_nats.json; `_kill` with --kill).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.environment import write_result
from benchmarks.nats_cluster import nats_cluster
from trainer.demo.run import local_broker

REPO = Path(__file__).resolve().parents[1]


class ScoreWatch:
    """Every agent's score and stats messages: latency per score, the latest stats per agent."""

    def __init__(self, port: int, protocol: int = mqtt.MQTTv5) -> None:
        self.latencies: list[float] = []
        self.scored_by: dict[str, set[str]] = {}
        self.score_ts: dict[
            str, list[float]
        ] = {}  # device -> timestamps of its scored windows' last readings
        self.stats: dict[str, dict[str, object]] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=protocol)
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
            self.score_ts.setdefault(str(body["device"]), []).append(float(body["ts"]))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _agent_settings(index: int, count: int, ports: list[int], partitioned: bool) -> dict[str, object]:
    """Agent i's broker and routing: its shard of all telemetry, or its partition on its cluster node."""
    if not partitioned:
        return {"broker": {"port": ports[0]}, "shard": {"index": index, "count": count}, "topics": {}}
    return {
        "broker": {"port": ports[index % len(ports)], "protocol": "3.1.1"},
        "topics": {"telemetry": f"part/{index}/sensors/+/telemetry"},
    }


def _start_agents(
    bundle: Path, ports: list[int], count: int, folder: Path, partitioned: bool
) -> list[subprocess.Popen[bytes]]:
    processes = []
    for index in range(count):
        settings = _agent_settings(index, count, ports, partitioned)
        topics = {**settings.pop("topics"), "score": "edgegan/score/{device}"}  # type: ignore[dict-item]
        config = folder / f"agent-{index}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "agent_id": f"gw-{index}",
                    "bundle": str(bundle.resolve()),
                    **settings,
                    "topics": topics,
                    "stats": {"interval_s": 2.0, "max_devices_reported": 1_000_000},
                }
            )
        )
        processes.append(_start_agent(folder, index))
    return processes


def _start_agent(folder: Path, index: int) -> subprocess.Popen[bytes]:
    """Agent `index` from its config in `folder` (again after a kill: same id, same persistent session)."""
    log = (folder / f"agent-{index}.log").open("ab")
    command = [sys.executable, "-m", "edge_agent", "run", "--config", str(folder / f"agent-{index}.yaml")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    return process


def _kill_and_return(
    processes: list[subprocess.Popen[bytes]], folder: Path, after_s: float, down_s: float
) -> threading.Thread:
    """SIGKILL agent 0 `after_s` into the run, start it again `down_s` later (its session kept the rest)."""

    def chaos() -> None:
        time.sleep(after_s)
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait(30)
        time.sleep(down_s)
        processes[0] = _start_agent(folder, 0)

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    return thread


def uncovered_readings(score_ts: list[float], readings: int, window: int, rate: float) -> int:
    """Readings of one device that lie in no scored window: each score at ts covers the `window` readings
    ending at ts (one every 1/rate s); `readings` were published."""
    if not score_ts:
        return readings
    ends = np.unique(np.round(np.asarray(score_ts) * rate).astype(np.int64))  # reading numbers
    starts = ends - (window - 1)
    covered, reach = 0, None
    for start, end in zip(starts, ends, strict=True):
        low = start if reach is None else max(start, reach + 1)
        if end >= low:
            covered += int(end - low + 1)
            reach = end
    return max(0, readings - covered)


@contextmanager
def _brokers(scratch: Path, kind: str, partitions: int, nats_nodes: int) -> Iterator[list[int]]:
    """The MQTT ports of one Mosquitto, or of a 3-node NATS cluster that partitions by device."""
    if kind == "mosquitto":
        with local_broker(scratch, "mosquitto") as broker:
            yield [broker.port]
        return
    with nats_cluster(scratch, nodes=nats_nodes, partitions=partitions) as ports:
        yield ports


def run(
    bundle: Path,
    devices: int,
    rate: float,
    agents: int,
    duration: float,
    broker_kind: str = "mosquitto",
    nats_nodes: int = 3,
    kill: tuple[float, float] | None = None,
) -> dict[str, object]:
    """The load run; `kill` = (after_s, down_s) SIGKILLs agent 0 mid-run and starts it again."""
    partitioned = broker_kind == "nats-cluster"
    with (
        tempfile.TemporaryDirectory() as scratch_name,
        _brokers(Path(scratch_name), broker_kind, agents, nats_nodes) as ports,
    ):
        scratch = Path(scratch_name)
        watch = ScoreWatch(ports[0], mqtt.MQTTv311 if partitioned else mqtt.MQTTv5)
        processes = _start_agents(bundle, ports, agents, scratch, partitioned)
        deadline = time.time() + 60
        while len(watch.stats) < agents and time.time() < deadline:
            time.sleep(0.5)
        assert len(watch.stats) == agents, f"only {len(watch.stats)} of {agents} agents reported"
        simulator = [
            sys.executable, "-m", "edge_agent", "simulate", "--bundle", str(bundle),
            "--broker", f"mqtt://127.0.0.1:{ports[0]}" + ("?protocol=3.1.1" if partitioned else ""),
            "--devices", str(devices), "--rate", str(rate),
            "--duration", str(duration), "--inject", "none", "--seed", "3",
        ]  # fmt: skip
        started = time.time()
        chaos = _kill_and_return(processes, scratch, *kill) if kill is not None else None
        published = subprocess.run(simulator, capture_output=True, text=True, check=True)
        sim_seconds = time.time() - started
        if chaos is not None:
            chaos.join(120)
        time.sleep(5.0 if kill is None else 20.0)  # the last windows (a returned agent's backlog) and stats
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
    readings = int(duration * rate)
    lost = {d: uncovered_readings(ts, readings, window, rate) for d, ts in watch.score_ts.items()}
    victim = {d for d, a in owners.items() if "gw-0" in a}
    coverage: dict[str, object] = {
        "readings_per_device": readings,
        "uncovered_readings_agent_0_devices": sum(lost[d] for d in victim),
        "uncovered_readings_other_devices": sum(v for d, v in lost.items() if d not in victim),
        "devices_never_scored": devices - len(owners),
    }
    if kill is not None:
        coverage["kill"] = {"agent": "gw-0", "after_s": kill[0], "down_s": kill[1], "devices": len(victim)}
    return {
        "broker": broker_kind if not partitioned else f"{broker_kind} ({nats_nodes} node(s))",
        "coverage": coverage,
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
    parser.add_argument("--broker", choices=("mosquitto", "nats-cluster"), default="mosquitto")
    parser.add_argument("--nats-nodes", type=int, default=3, help="NATS nodes (1: no replication)")
    parser.add_argument(
        "--kill",
        nargs=2,
        type=float,
        metavar=("AFTER_S", "DOWN_S"),
        help="SIGKILL agent 0 AFTER_S into the run and start it again DOWN_S later; writes *_kill.json",
    )
    args = parser.parse_args()
    kill = (args.kill[0], args.kill[1]) if args.kill else None
    report = run(
        args.bundle, args.devices, args.rate, args.agents, args.duration, args.broker, args.nats_nodes, kill
    )
    name = "fleet_load" if args.broker == "mosquitto" else "fleet_load_nats"
    path = write_result(name + ("_kill" if kill else ""), report)
    print(json.dumps({k: v for k, v in report.items() if k != "per_agent"}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
