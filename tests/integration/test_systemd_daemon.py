"""The daemon speaks systemd's notify protocol for real: ready, watchdog pings from its loop, stopping."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.integration.conftest import Broker


def test_daemon_reports_ready_pings_the_watchdog_and_says_stopping(
    tiny_bundle: Path, broker: Broker, tmp_path: Path
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = str(tmp_path / "notify.sock")
    listener.bind(address)
    listener.settimeout(30)
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "agent_id": "sd",
                "bundle": str(tiny_bundle),
                "broker": {"port": broker.port},
                "stats": {"interval_s": 0.2},
            }
        )
    )
    # WATCHDOG_PID is left out: systemd sets it to the service's pid, which a test cannot know in advance.
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}
    agent = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        messages = [listener.recv(1000).decode()]
        assert messages[0].startswith("READY=1\nSTATUS=serving ")
        pings_until = time.monotonic() + 1.0
        while time.monotonic() < pings_until:
            messages.append(listener.recv(1000).decode())
        pings = messages.count("WATCHDOG=1")
        assert 4 <= pings <= 15, messages  # every 0.1 s (half of WATCHDOG_USEC) for about a second
        agent.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages:
            messages.append(listener.recv(1000).decode())
        assert agent.wait(20) == 0
        statuses = [m for m in messages if m.startswith("STATUS=")]
        assert statuses and "scored" in statuses[-1], json.dumps(messages[-5:])
    finally:
        if agent.poll() is None:
            agent.kill()
        listener.close()
