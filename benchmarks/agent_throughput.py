"""Agent throughput, latency and memory against a bare paho subscriber, same broker, same run.

Usage: python -m benchmarks.agent_throughput [--bundle runs/demo/bundle] [--messages 50000] [--rounds 3]
1. Drain rate: N readings (100 devices) wait in a persistent session; the consumer connects and the time to
   take them is measured from its first message, for the agent and for a subscriber that only decodes JSON,
   alternating over several rounds because this machine's speed drifts by tens of percent between minutes.
   Then the same with 4N readings batched 100 to a message (the columnar form).
2. Latency: 1,000 readings/s over 100 devices for 15 s, one reading per message; then 10,000 readings/s
   (--paced-rate) batched --batch to a message for 30 s. Publish-to-decision latency from the score topic.
3. Resident memory of the agent process (VmRSS) at the end.
4. Device flood: one reading each from 100,000 distinct device ids (ingest.max_devices at its default):
   the agent's memory per tracked device, its memory at the end, what it refused, and the retained
   availability topics left on the broker.
Writes benchmarks/results/agent_throughput.json.
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
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.environment import RESULTS, write_result
from edge_agent.simulator.sparkplug_node import SparkplugNode
from edge_agent.sparkplug_topics import NAMESPACE
from trainer.demo.broker import free_port, start_mosquitto

DEVICES = 100
SPARKPLUG_GROUP = "bench"
PACED_PUBLISHER = r"""
import json, sys, time
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, seconds, rate_hz, devices = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
channels = json.loads(sys.argv[5])
means, scales = np.array(json.loads(sys.argv[6])), np.array(json.loads(sys.argv[7]))
batch = int(sys.argv[8])
c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
c.max_inflight_messages_set(1000); c.max_queued_messages_set(0)
c.connect("127.0.0.1", port); c.loop_start()
rng = np.random.default_rng(1)
gap = batch / rate_hz  # between messages
period = devices / rate_hz  # between one device's readings
seqs = [0] * devices
messages = int(seconds * rate_hz / batch)
wall, start = time.time(), time.perf_counter()
for i in range(messages):
    device = i % devices
    rows = rng.normal(size=(batch, len(channels))) * scales + means
    # Message i is due at its slot; its newest reading is stamped with that time and older ones one period
    # apart before it, so a publisher running late counts against the latency, never for it.
    due = (i + 1) * gap
    newest = wall + due
    if batch == 1:
        body = {"ts": newest, "seq": seqs[device], "values": dict(zip(channels, map(float, rows[0])))}
    else:
        body = {
            "ts": [newest - (batch - 1 - k) * period for k in range(batch)],
            "seq": list(range(seqs[device], seqs[device] + batch)),
            "values": {ch: rows[:, j].tolist() for j, ch in enumerate(channels)},
        }
    seqs[device] += batch
    payload = json.dumps(body)
    delay = start + due - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    c.publish(f"sensors/dev{device:03d}/telemetry", payload, qos=1)
print(json.dumps({"offered_per_s": messages * batch / (time.perf_counter() - start)}))
c.disconnect(); c.loop_stop()
"""
# What both bare subscribers share: their arguments, the decoder, and a count whose clock starts at the
# first message, as the agent's does. Each client calls `took(payload)` and stops once it returns True.
BARE_PRELUDE = r"""
import json, sys, time
port, expected, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
topic_filter, payload_format, session = sys.argv[4], sys.argv[5], sys.argv[6]
if payload_format == "sparkplug":
    from edge_agent.sparkplug_schema import Payload
    decode = Payload.FromString
else:
    decode = json.loads
count, started = 0, [0.0]
def took(payload):
    global count
    if count == 0:
        started[0] = time.perf_counter()
    decode(payload)
    count += 1
    return count >= expected
def report():
    print(json.dumps({"seconds": time.perf_counter() - started[0], "count": count}))
"""
BARE_SUBSCRIBER = (
    BARE_PRELUDE
    + r"""
import threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
done = threading.Event()
def on_message(c, u, m):
    if took(m.payload):
        done.set()
def on_connect(c, u, f, r, p):
    c.subscribe(topic_filter, qos=1)
c = mqtt.Client(
    callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"bare-{session}", protocol=mqtt.MQTTv5
)
c.on_message, c.on_connect = on_message, on_connect
props = Properties(PacketTypes.CONNECT); props.SessionExpiryInterval = 3600
c.connect("127.0.0.1", port, clean_start=False, properties=props)
c.loop_start()
if mode == "register":
    time.sleep(1); c.disconnect(); c.loop_stop(); sys.exit(0)
done.wait(600)
report()
c.disconnect(); c.loop_stop()
"""
)


def _start_broker(folder: Path, port: int) -> subprocess.Popen[bytes]:
    # Same limits for both consumers; 20 in-flight QoS 1 messages (the default) throttles any consumer.
    extra = "max_inflight_messages 1000\nset_tcp_nodelay true\n"
    return start_mosquitto(folder, port, extra, max_queued=1_000_000)


def _client(port: int) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


# The same bare subscriber on libmosquitto (C, through pymosquitto): the fastest Python MQTT client found
# installable here. It acknowledges QoS 1 itself once the callback returns, which is why the agent cannot use
# it: the agent acknowledges a message only after its readings are scored (at least once across a crash).
BARE_SUBSCRIBER_LIBMOSQUITTO = (
    BARE_PRELUDE
    + r"""
from pymosquitto import Mosquitto
c = Mosquitto(client_id=f"bare-libmosquitto-{session}", clean_start=False)
def on_connect(client, userdata, rc):
    client.subscribe(topic_filter, qos=1)
    if mode == "register":
        client.disconnect()
def on_message(client, userdata, msg):
    if took(msg.payload):
        client.disconnect()
c.on_connect, c.on_message = on_connect, on_message
c.connect("127.0.0.1", port)
c.loop_forever()
if mode == "run":
    report()
"""
)


def libmosquitto_available() -> bool:
    """Whether pymosquitto and the libmosquitto it wraps are installed (the `bench` extra, Debian's
    libmosquitto1)."""
    try:
        import pymosquitto  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _payloads(
    channels: list[str], means: np.ndarray, scales: np.ndarray, count: int, ts: float, per_message: int = 1
) -> list[bytes]:
    """`count` readings over DEVICES devices (message i goes to device i % DEVICES); with `per_message` > 1,
    each message carries that many consecutive readings of its device in the columnar batch form."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(count, len(channels))) * scales + means
    if per_message == 1:
        return [
            json.dumps(
                {"ts": ts + i // DEVICES, "values": dict(zip(channels, map(float, row), strict=True))}
            ).encode()
            for i, row in enumerate(rows)
        ]
    messages = []
    for m in range(count // per_message):
        block = rows[m * per_message : (m + 1) * per_message]
        first = ts + (m // DEVICES) * per_message
        body = {
            "ts": [first + k for k in range(per_message)],
            "values": {c: [float(v) for v in block[:, j]] for j, c in enumerate(channels)},
        }
        messages.append(json.dumps(body).encode())
    return messages


@dataclass(frozen=True)
class Backlog:
    """Messages to drain: payloads, their topics (None: JSON telemetry of device i % DEVICES) and format."""

    payloads: list[bytes]
    readings_per_message: int
    topics: list[str] | None = None
    payload_format: str = "json"  # or "sparkplug"

    @property
    def bare_filter(self) -> str:
        return "sensors/+/telemetry" if self.topics is None else f"{NAMESPACE}/{SPARKPLUG_GROUP}/#"

    @property
    def session(self) -> str:
        """The consumers' session names for this backlog. Each backlog has its own: a persistent session
        queues everything its filter matches while its consumer is away (the other consumer's rounds), and
        a session shared between backlogs would hand one format's leftovers to the next drain."""
        return f"{self.payload_format}-{self.readings_per_message}"

    @property
    def data_messages(self) -> int:
        """Messages that carry readings (the births before a Sparkplug backlog carry none)."""
        return len(self.payloads) - (2 * DEVICES if self.payload_format == "sparkplug" else 0)


def _sparkplug_backlog(
    channels: list[str], means: np.ndarray, scales: np.ndarray, count: int, ts: float, metrics: int
) -> Backlog:
    """Each of DEVICES edge nodes (one device each) born, then DDATA of about `metrics` alias-only metrics
    each (metrics // channels readings): `count` readings in all."""
    per_message = max(1, metrics // len(channels))
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(count, len(channels))) * scales + means
    nodes = [SparkplugNode(SPARKPLUG_GROUP, f"node{d:03d}", {"dev": channels}) for d in range(DEVICES)]
    topics, payloads = [], []
    for node in nodes:
        topics += [node.topic("NBIRTH"), node.topic("DBIRTH", "dev")]
        payloads += [node.node_birth(ts), node.device_birth("dev", ts, [float(v) for v in means])]
    for m in range(count // per_message):
        node = nodes[m % DEVICES]
        first = ts + (m // DEVICES) * per_message
        block = rows[m * per_message : (m + 1) * per_message]
        topics.append(node.topic("DDATA", "dev"))
        payloads.append(
            node.device_data("dev", [(first + k, list(map(float, r))) for k, r in enumerate(block)])
        )
    return Backlog(payloads, per_message, topics, "sparkplug")


def _publish_all(port: int, payloads: list[bytes], topics: list[str] | None = None) -> None:
    client = _client(port)
    infos = [
        client.publish(topics[i] if topics else f"sensors/dev{i % DEVICES:03d}/telemetry", p, qos=1)
        for i, p in enumerate(payloads)
    ]
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def _agent_config(
    folder: Path,
    port: int,
    bundle: Path,
    stats_interval: float,
    scores: bool,
    sparkplug: bool = False,
    score_per: str = "window",
    session: str = "paced",
) -> Path:
    path = folder / "agent.yaml"
    config: dict[str, object] = {
        "agent_id": "bench",
        "bundle": str(bundle),
        "broker": {"port": port, "client_id": f"edgegan-bench-{session}"},
        "topics": {"score": "bench/score/{device}" if scores else None, "score_per": score_per},
        "stats": {"interval_s": stats_interval},
        "ingest": {"max_age_s": 86400.0},
    }
    if sparkplug:
        config["sparkplug"] = {"enabled": True, "group_id": SPARKPLUG_GROUP}
    path.write_text(yaml.safe_dump(config))
    return path


def _start_agent(config: Path, tree: Path | None = None) -> subprocess.Popen[bytes]:
    """The agent of this checkout, or of `tree` (another checkout, e.g. a worktree of the previous commit)."""
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
    # -X faulthandler: an agent that will not stop is sent SIGABRT and dumps every thread's stack here.
    with (config.parent / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "edge_agent", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd=tree,
        )


class _Watch:
    """Follows the agent's stats and score topics.

    Latency is publish to decision: a reading's decision time minus when the message that carried it was
    due. A batch's newest reading is stamped with that time and the others one `period` apart before it,
    so for the reading with sequence number `seq` its message was due at ts + (batch - 1 - seq % batch) x
    period.
    """

    def __init__(self, port: int, batch: int = 1, period: float = 0.0) -> None:
        self.stats: dict[str, object] = {}
        self.online = threading.Event()
        self.latency_s: list[float] = []
        self.batch, self.period = batch, period
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(
            [("edgegan/agent/bench/#", 0), ("bench/score/#", 0)]
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        """Disconnect: a watcher left connected holds its socket until the process ends."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, _c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/stats"):
            self.stats = json.loads(message.payload)
        elif message.topic.endswith("/status") and message.payload == b"online":
            self.online.set()
        elif message.topic.startswith("bench/score/"):
            score = json.loads(message.payload)
            behind = (self.batch - 1 - (score["seq"] or 0) % self.batch) * self.period
            self.latency_s.append(time.time() - score["ts"] - behind)


def _bare_argv(script: Path, port: int, backlog: Backlog, mode: str) -> list[str]:
    count = str(len(backlog.payloads)) if mode == "run" else "0"
    return [
        *(sys.executable, str(script), str(port), count, mode),
        *(backlog.bare_filter, backlog.payload_format, backlog.session),
    ]


def _bare_drain(script: Path, port: int, backlog: Backlog) -> float:
    payloads = backlog.payloads
    _publish_all(port, payloads, backlog.topics)
    out = subprocess.run(
        _bare_argv(script, port, backlog, "run"), check=True, capture_output=True, text=True
    ).stdout
    return len(payloads) / float(json.loads(out)["seconds"])


def _agent_drain(
    config: Path, watch: _Watch, port: int, backlog: Backlog, tree: Path | None = None
) -> tuple[float, float]:
    """(messages/s, share of the backlog timed): from the first stats report that shows messages taken to the
    one that shows all of them.

    The agent's `online` comes after its subscription is acknowledged, by when much of the backlog may be
    in; so the clock starts at the first report with received > 0 and counts only what came after it.
    """
    payloads = backlog.payloads
    _publish_all(port, payloads, backlog.topics)
    watch.online.clear()
    watch.stats = {}
    agent = _start_agent(config, tree)
    samples: list[tuple[float, int]] = []  # (when, messages the agent's stats said it had taken)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        received = int(watch.stats.get("received", 0))  # type: ignore[call-overload]
        if received > 0 and (not samples or received != samples[-1][1]):
            samples.append((time.perf_counter(), received))
        if received >= len(payloads):
            break
        time.sleep(0.002)
    agent.send_signal(signal.SIGTERM)
    try:
        agent.wait(60)
    except subprocess.TimeoutExpired:
        log = config.parent / "agent.log"
        mark = log.stat().st_size
        agent.send_signal(signal.SIGABRT)  # faulthandler: the stuck agent's stacks go to its log
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(10)
        stacks = log.read_bytes()[mark:].decode(errors="replace")[-3000:]
        print(
            f"agent ({tree or 'this checkout'}) did not stop within 60 s of SIGTERM; aborted. Its stacks:\n"
            f"{stacks}",
            file=sys.stderr,
            flush=True,
        )
    return drain_clock(samples, len(payloads))


def drain_clock(samples: list[tuple[float, int]], total: int) -> tuple[float, float]:
    """(messages/s, share of the backlog timed) from the agent's progress reports (when, messages taken so
    far), first to last. Refuses a clock that starts after half of the backlog or more was taken: such a
    clock times a remnant (once it timed almost nothing and read 6e9 readings/s)."""
    if not samples or samples[-1][1] < total:
        raise RuntimeError(f"the agent took {samples[-1][1] if samples else 0} of {total} messages")
    (start, before), (end, _) = samples[0], samples[-1]
    timed = total - before
    if timed < total / 2 or end <= start:
        raise RuntimeError(
            f"the agent took {before} of {total} messages before its first stats report: the clock would "
            "time a remnant"
        )
    return timed / (end - start), timed / total


def drain_rates(
    port: int,
    folder: Path,
    bundle: Path,
    backlog: Backlog,
    rounds: int,
    compare_tree: Path | None = None,
) -> dict[str, object]:
    """Readings/s taking `backlog` from a persistent session, bare and agent alternating; with
    `compare_tree`, that checkout's agent too, in every round. Message rates count every message (births
    included); readings/s scale them by the share that carries readings."""
    script = folder / "bare.py"
    script.write_text(BARE_SUBSCRIBER)
    subprocess.run(_bare_argv(script, port, backlog, "register"), check=True)
    fast = folder / "bare_libmosquitto.py" if libmosquitto_available() else None
    if fast is not None:
        fast.write_text(BARE_SUBSCRIBER_LIBMOSQUITTO)
        subprocess.run(_bare_argv(fast, port, backlog, "register"), check=True, timeout=60)
    sparkplug = backlog.payload_format == "sparkplug"
    config = _agent_config(
        folder, port, bundle, stats_interval=0.05, scores=False, sparkplug=sparkplug, session=backlog.session
    )
    per_message = backlog.readings_per_message * backlog.data_messages / len(backlog.payloads)
    watch = _Watch(port)
    agent = _start_agent(config)  # registers the session, then stops cleanly
    watch.online.wait(60)
    agent.send_signal(signal.SIGTERM)
    agent.wait(30)
    runs = []
    for _ in range(rounds):
        bare = _bare_drain(script, port, backlog)
        ours, timed = _agent_drain(config, watch, port, backlog)
        run = {
            "bare_subscriber_readings_per_s": bare * per_message,
            "agent_readings_per_s": ours * per_message,
            "agent_share_timed": timed,
            "ratio": ours / bare,
        }
        if fast is not None:
            fastest = _bare_drain(fast, port, backlog)
            run |= {
                "libmosquitto_subscriber_readings_per_s": fastest * per_message,
                "ratio_to_libmosquitto": ours / fastest,
            }
        if compare_tree is not None:
            theirs, _ = _agent_drain(config, watch, port, backlog, compare_tree)
            run |= {"compare_agent_readings_per_s": theirs * per_message, "compare_ratio": theirs / bare}
        runs.append(run)
    watch.close()
    ratios = [float(run["ratio"]) for run in runs]
    agent_rates = [float(run["agent_readings_per_s"]) for run in runs]
    summary = {
        "format": backlog.payload_format,
        "readings_per_message": backlog.readings_per_message,
        "messages": len(backlog.payloads),
        "rounds": runs,
        "agent_readings_per_s_median": float(np.median(agent_rates)),
        "ratio_median": float(np.median(ratios)),
        "ratio_min": min(ratios),
    }
    if fast is not None:
        summary["ratio_to_libmosquitto_median"] = float(
            np.median([float(run["ratio_to_libmosquitto"]) for run in runs])
        )
    if compare_tree is not None:
        summary["compare_tree"] = str(compare_tree)
        summary["compare_ratio_median"] = float(np.median([float(run["compare_ratio"]) for run in runs]))
    return summary


def paced_latency(
    port: int,
    folder: Path,
    bundle: Path,
    channels: list[str],
    means: np.ndarray,
    scales: np.ndarray,
    seconds: int = 15,
    rate_hz: int = 1000,
    batch: int = 1,
) -> dict[str, object]:
    """`rate_hz` readings/s over DEVICES devices, `batch` readings per message (columnar);
    publish-to-decision latency and the agent's memory."""
    # Batched, a score message per telemetry message (its newest reading, decided last of its message), as
    # a dashboard would take them: one per reading costs the agent more than scoring at these rates.
    score_per = "window" if batch == 1 else "message"
    config = _agent_config(folder, port, bundle, stats_interval=1.0, scores=True, score_per=score_per)
    agent = _start_agent(config)
    watch = _Watch(port, batch, DEVICES / rate_hz)
    watch.online.wait(60)
    # Readings spread evenly in time, each message stamped when sent, from a process of its own so that
    # publishing never delays the observer's clock.
    script = folder / "paced.py"
    script.write_text(PACED_PUBLISHER)
    out = subprocess.run(
        [
            sys.executable,
            str(script),
            str(port),
            str(seconds),
            str(rate_hz),
            str(DEVICES),
            json.dumps(channels),
            json.dumps(means.tolist()),
            json.dumps(scales.tolist()),
            str(batch),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    achieved = float(json.loads(out)["offered_per_s"])
    time.sleep(2)
    rss_mb = _rss_mb(agent.pid)
    internal = watch.stats.get("latency_ms")
    scored = watch.stats.get("scored")
    agent.send_signal(signal.SIGTERM)
    agent.wait(30)
    watch.close()
    if not watch.latency_s:
        raise RuntimeError("no score message reached the observer: nothing to measure latency on")
    # The first window of each device is due only once it has filled: latencies count from then on.
    latency_ms = np.asarray(watch.latency_s) * 1e3
    return {
        "offered_per_s": achieved,
        "readings_per_message": batch,
        "score_per": score_per,
        "devices": DEVICES,
        "agent_scored_windows": scored,
        "latencies_measured": int(latency_ms.size),
        "latency_p50_ms": float(np.percentile(latency_ms, 50)),
        "latency_p99_ms": float(np.percentile(latency_ms, 99)),
        "latency_max_ms": float(latency_ms.max()),
        "agent_rss_mb": rss_mb,
        "agent_receive_to_decision_ms": internal,
    }


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def _retained_availability(port: int, quiet_s: float = 2.0, limit_s: float = 60.0) -> int:
    """Retained per-device availability topics a new subscriber is handed (counted until none has come
    for `quiet_s`: the broker sends tens of thousands at its own pace)."""
    topics: set[str] = set()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, m: topics.add(m.topic) if m.retain else None
    client.on_connect = lambda c, *_: c.subscribe("edgegan/device/+/availability", 0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    seen, last_change, deadline = -1, time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() - last_change < quiet_s and time.monotonic() < deadline:
        if len(topics) != seen:
            seen, last_change = len(topics), time.monotonic()
        time.sleep(0.1)
    client.disconnect()
    client.loop_stop()
    return len(topics)


def device_flood(
    port: int,
    folder: Path,
    bundle: Path,
    channels: list[str],
    means: np.ndarray,
    total: int = 100_000,
    steps: tuple[int, ...] = (1_000, 10_000),
) -> dict[str, object]:
    """One reading from each of `total` new device ids; memory at each step of `steps` and at the end."""
    config = _agent_config(folder, port, bundle, stats_interval=0.2, scores=False)
    agent = _start_agent(config)
    watch = _Watch(port)
    watch.online.wait(60)
    client = _client(port)
    body = json.dumps({"values": dict(zip(channels, map(float, means), strict=True))}).encode()
    rss = {0: _rss_mb(agent.pid)}
    sent = 0
    for target in (*steps, total):
        for chunk in range(sent, target, 1000):  # in chunks: paho's queue is bounded by its in-flight window
            infos = [
                client.publish(f"sensors/flood{i:06d}/telemetry", body, qos=1)
                for i in range(chunk, min(chunk + 1000, target))
            ]
            for info in infos:
                info.wait_for_publish(120)
        sent = target
        deadline = time.monotonic() + 300
        while int(watch.stats.get("received", 0)) < sent and time.monotonic() < deadline:  # type: ignore[call-overload]
            time.sleep(0.05)
        time.sleep(1.0)
        rss[sent] = _rss_mb(agent.pid)
    client.disconnect()
    client.loop_stop()
    stats = dict(watch.stats)
    watch.close()
    retained = _retained_availability(port)
    agent.send_signal(signal.SIGTERM)
    agent.wait(30)
    first, tracked = steps[0], steps[-1]
    return {
        "device_ids_attempted": total,
        "received": stats.get("received"),
        "rejected": stats.get("rejected"),
        "devices_tracked": stats.get("devices_tracked"),
        "rss_mb": {str(k): round(v, 1) for k, v in rss.items()},
        # the slope between two fills below the limit: what one more tracked device costs
        "kb_per_tracked_device": round((rss[tracked] - rss[first]) * 1024 / (tracked - first), 2),
        "rss_growth_past_limit_mb": round(rss[total] - rss[tracked], 1),
        "retained_availability_topics": retained,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=Path("runs/demo/bundle"))
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="bare/agent drain pairs; the median is reported"
    )
    parser.add_argument("--batch", type=int, default=100, help="readings per message in the batched drain")
    parser.add_argument(
        "--paced-rate", type=int, default=10_000, help="readings/s in the batched latency test (--batch each)"
    )
    parser.add_argument("--flood-devices", type=int, default=100_000, help="distinct ids in the device flood")
    parser.add_argument(
        "--only",
        choices=["drain", "sparkplug", "paced", "flood"],
        help="run one part (drain: single, batched and Sparkplug drains); the other sections of the last "
        "run are kept in the results, with their date",
    )
    parser.add_argument(
        "--compare-tree",
        type=Path,
        help="another checkout (e.g. `git worktree add /tmp/before HEAD~1`): its agent drains the same "
        "single-reading backlog in every round (with --only drain, the batched and Sparkplug ones too); "
        "writes results/agent_throughput_compare.json and stops",
    )
    args = parser.parse_args()
    if args.compare_tree is not None and args.only not in (None, "drain"):
        parser.error("--compare-tree compares drains: leave --only out (single readings) or use --only drain")
    from edge_agent.bundle import load_bundle

    manifest = load_bundle(args.bundle).manifest
    means, scales = np.array(manifest.normalisation.mean), np.array(manifest.normalisation.scale)
    report: dict[str, object] = {
        "bundle": manifest.bundle_id,
        "window": manifest.window_len,
        "channels": len(manifest.channels),
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        port = free_port()
        broker = _start_broker(folder, port)
        bundle = args.bundle.resolve()
        ago = time.time() - 3600
        try:
            if args.compare_tree is not None:
                singles = _payloads(manifest.channels, means, scales, args.messages, ago)
                backlogs = {"drain": Backlog(singles, 1)}
                if args.only == "drain":  # the batched and Sparkplug backlogs too
                    batches = _payloads(manifest.channels, means, scales, args.messages * 4, ago, args.batch)
                    backlogs["drain_batched"] = Backlog(batches, args.batch)
                    backlogs["drain_sparkplug"] = _sparkplug_backlog(
                        manifest.channels, means, scales, args.messages * 4, ago, args.batch
                    )
                compared = {
                    name: drain_rates(port, folder, bundle, backlog, args.rounds, args.compare_tree)
                    for name, backlog in backlogs.items()
                }
                print(json.dumps(compared, indent=2))
                print(f"wrote {write_result('agent_throughput_compare', {**report, **compared})}")
                return
            measured: dict[str, object] = {}
            if args.only in (None, "drain"):
                payloads = _payloads(manifest.channels, means, scales, args.messages, ago)
                measured["drain"] = drain_rates(port, folder, bundle, Backlog(payloads, 1), args.rounds)
                batches = _payloads(manifest.channels, means, scales, args.messages * 4, ago, args.batch)
                backlog = Backlog(batches, args.batch)
                measured["drain_batched"] = drain_rates(port, folder, bundle, backlog, args.rounds)
            if args.only in (None, "drain", "sparkplug"):
                backlog = _sparkplug_backlog(
                    manifest.channels, means, scales, args.messages * 4, ago, args.batch
                )
                measured["drain_sparkplug"] = drain_rates(port, folder, bundle, backlog, args.rounds)
            if args.only in (None, "paced"):
                measured["paced"] = paced_latency(port, folder, bundle, manifest.channels, means, scales)
                measured["paced_batched"] = paced_latency(
                    port,
                    folder,
                    bundle,
                    manifest.channels,
                    means,
                    scales,
                    seconds=30,
                    rate_hz=args.paced_rate,
                    batch=args.batch,
                )
            if args.only in (None, "flood"):
                measured["device_flood"] = device_flood(
                    port, folder, bundle, manifest.channels, means, args.flood_devices
                )
        finally:
            broker.terminate()
            broker.wait(10)
    kept: dict[str, Any] = {}
    if args.only is not None:  # keep the other sections of the last run, each with the date it was measured
        previous = RESULTS / "agent_throughput.json"
        kept = json.loads(previous.read_text()) if previous.is_file() else {}
    carried = {
        k: v for k, v in kept.items() if k not in measured and k not in report and k not in _NOT_SECTIONS
    }
    report = {**carried, **report, **measured}
    report["sections_measured_at"] = section_dates(kept, list(carried), list(measured))
    print(json.dumps(report, indent=2))
    print(f"wrote {write_result('agent_throughput', report)}")


_NOT_SECTIONS = (
    "machine",
    "sections_measured_at",
    "carried_sections_measured_at",
    "drain_and_paced_measured_at",
)


def section_dates(kept: dict[str, Any], carried: list[str], measured: list[str]) -> dict[str, str | None]:
    """When each section of the results was measured: now for this run's, the date it already had for a
    carried one (else the last run's). Why per section: one date for all carried sections, taken from the
    last run, dated the drains of 4 December as measured on 6 December after two `--only paced` runs."""
    before = kept.get("sections_measured_at") or {}
    last_run = kept.get("machine", {}).get("measured_at")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {name: before.get(name, last_run) for name in carried} | {name: now for name in measured}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
