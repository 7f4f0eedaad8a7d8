"""The agent killed (SIGKILL) and restarted while readings keep coming: every reading ends up scored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
import yaml

from tests.conftest import correlated_series
from tests.integration.conftest import Broker, Recorder, publisher

pytestmark = pytest.mark.faults

WINDOW = 32  # the tiny bundle's window_len
READINGS = 400


def _start_agent(config: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )


def _covered(recorder: Recorder) -> set[int]:
    """Sequence numbers inside at least one scored window (a window ending at seq s holds s-31..s)."""
    seqs: set[int] = set()
    for item in recorder.json_on("edgegan/score/k1"):
        end = int(item["seq"])  # type: ignore[call-overload]
        seqs.update(range(end - WINDOW + 1, end + 1))
    return seqs


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_readings_published_while_the_agent_is_down_are_scored(
    tiny_bundle: Path, broker: Broker, recorder: Callable[..., Recorder], tmp_path: Path, protocol: str
) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "agent_id": "restart",
                "bundle": str(tiny_bundle),
                "broker": {
                    "port": broker.port,
                    "protocol": protocol,  # 5: clean_start=False + session expiry; 3.1.1: clean_session=False
                    "reconnect_min_s": 1,
                    "reconnect_max_s": 2,
                },
                "topics": {"score": "edgegan/score/{device}"},
                "stats": {"interval_s": 0.5},
            }
        )
    )
    watch = recorder("edgegan/score/#", "edgegan/agent/restart/status")
    log = (tmp_path / "agent.log").open("ab")  # kept for debugging a failure
    agent = _start_agent(config, log)
    try:
        # Subscribed before the agent started, so the status arrives live (retain flag not set).
        watch.wait_for(lambda ms: any(t.endswith("/status") and p == b"online" for t, p, _ in ms), timeout=60)
        values = correlated_series(READINGS, seed=44)
        start_ts = time.time() - READINGS
        device = publisher(broker.port)

        def publish_all() -> None:
            for i, row in enumerate(values):
                payload = {"ts": start_ts + i, "seq": i, "values": [float(v) for v in row]}
                device.publish("sensors/k1/telemetry", json.dumps(payload), qos=1)
                time.sleep(0.01)

        feeder = threading.Thread(target=publish_all)
        feeder.start()
        watch.wait_for(lambda ms: len(watch.json_on("edgegan/score/k1")) >= 20, timeout=60)
        agent.send_signal(signal.SIGKILL)  # no clean stop: whatever was in flight must come back
        agent.wait(timeout=10)
        killed_at = len(watch.json_on("edgegan/score/k1"))
        time.sleep(1.0)  # readings keep arriving at the broker while no agent is connected
        agent = _start_agent(config, log)
        feeder.join(timeout=60)
        watch.wait_for(lambda ms: set(range(WINDOW - 1, READINGS)) <= _covered(watch), timeout=90)
        assert killed_at < READINGS - WINDOW, "the kill must happen mid-stream for this test to mean anything"
        device.loop_stop()
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=20) == 0, "SIGTERM is a clean stop with exit code 0"
        log.close()
