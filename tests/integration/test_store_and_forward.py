"""Store-and-forward against a real Mosquitto: an outage with an agent restart inside it loses no alert."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.mqtt_link import open_link
from edge_agent.service import build_agent
from tests.conftest import correlated_series
from tests.integration.conftest import Broker, Recorder, RunningAgent, agent_config, publisher, wait_until

DEVICES = ("pump-a", "pump-b")
ROWS = 360


pytestmark = pytest.mark.faults


def _readings_with_two_faults(seed: int) -> list[bytes]:
    values = correlated_series(ROWS, seed=seed)
    spread = values[:, 1].std()
    values[80:120, 1] += 5 * spread  # alert 1 opens, then closes once the fault is over
    values[200:240, 1] += 5 * spread  # alert 2
    start = time.time() - 600
    return [
        json.dumps({"ts": start + i, "values": {f"s{c}": float(v[c]) for c in range(3)}}).encode()
        for i, v in enumerate(values)
    ]


def _spooled_alerts(path: Path) -> list[dict[str, object]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT payload FROM outbox WHERE topic LIKE 'edgegan/alert/%' ORDER BY id")
        return [json.loads(payload) for (payload,) in rows.fetchall()]


def test_alerts_raised_during_an_outage_survive_an_agent_restart_and_arrive_once_in_order(
    tiny_bundle: Path,
    broker: Broker,
    tmp_path: Path,
    recorder: Callable[..., Recorder],
    start_agent: Callable[..., RunningAgent],
) -> None:
    spool_path = tmp_path / "spool.sqlite"
    config = agent_config(tiny_bundle, broker.port, spool={"path": str(spool_path)})

    # The first agent is stepped by hand: the readings wait in its inbox while the broker goes away.
    link = open_link(config)
    first = build_agent(config, link)
    link.start()
    assert link.connected.wait(20)
    device = publisher(broker.port)
    for index, name in enumerate(DEVICES):
        for payload in _readings_with_two_faults(seed=40 + index):
            device.publish(f"sensors/{name}/telemetry", payload, qos=1)
    assert wait_until(lambda: link.inbox_depth() == ROWS * len(DEVICES)), link.inbox_depth()
    device.loop_stop()
    broker.stop()
    assert wait_until(lambda: not link.connected.is_set())
    while first.step():
        pass  # scored during the outage: alerts and state changes go to the spool
    assert first.stats.alerts == 2 * len(DEVICES), "each device's two faults open an alert"
    spooled = _spooled_alerts(spool_path)
    assert len(spooled) == 4 * len(DEVICES)  # a start and an end per fault
    # An end message carries the whole alert's peak, and its severity is the peak's.
    threshold = first.pipeline.threshold
    for start in (a for a in spooled if a["type"] == "start"):
        (end,) = [a for a in spooled if a["alert_id"] == start["alert_id"] and a["type"] == "end"]
        assert start["peak_score"] == start["score"] and end["peak_score"] >= start["score"] > end["score"]
        assert end["severity"] == (threshold.severity_of(end["peak_score"]) or "alert")
    link.stop()  # the agent stops (or dies) while the broker is still away
    assert first.publisher.spool is not None
    first.publisher.spool.close()

    broker.start()
    watch = recorder("edgegan/alert/#", "edgegan/state/#")
    second = start_agent(config)  # a fresh agent process on the same spool
    watch.wait_for(lambda ms: sum(t.startswith("edgegan/alert/") for t, _, _ in ms) >= len(spooled))
    spool = second.service.publisher.spool
    assert spool is not None
    assert wait_until(lambda: spool.stored() == 0)
    time.sleep(1.0)  # anything sent twice would arrive by now
    received = [json.loads(p) for t, p, _ in watch.messages if t.startswith("edgegan/alert/")]
    assert [(a["alert_id"], a["type"]) for a in received] == [(a["alert_id"], a["type"]) for a in spooled]
    assert all(a["historical"] is True for a in received)
    for name in DEVICES:
        mine = [a for a in received if a["device"] == name]
        assert [a["type"] for a in mine] == ["start", "end", "start", "end"]
        assert [a["ts"] for a in mine] == sorted(a["ts"] for a in mine)  # type: ignore[type-var]
        # The retained state published after the outage is the device's last state.
        states = [p for t, p, _ in watch.messages if t == f"edgegan/state/{name}"]
        assert states and states[-1] == b"normal"
