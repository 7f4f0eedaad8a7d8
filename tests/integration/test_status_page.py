"""The status page in a real headless browser, against a running agent and a real Mosquitto."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import correlated_series
from tests.integration.conftest import Broker, RunningAgent, agent_config, publisher, wait_until
from tests.integration.test_agent_mqtt import _payloads

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)


def _browser(url: str, *extra: str) -> str:
    """What headless chromium makes of the page: its DOM after load (or whatever `extra` asks for)."""
    command = [
        CHROMIUM or "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
    ]
    done = subprocess.run([*command, *extra, url], capture_output=True, text=True, timeout=90, check=True)
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_the_page_shows_devices_alerts_and_rejections_in_a_real_browser(
    tiny_bundle: Path, broker: Broker, start_agent: Callable[..., RunningAgent], tmp_path: Path
) -> None:
    config = agent_config(
        tiny_bundle, broker.port, status_page={"port": 0, "refresh_s": 2}, ingest={"offline_after_s": 30}
    )
    agent = start_agent(config)
    faulty = correlated_series(200, seed=31)
    faulty[150:, 1] += 4 * faulty[:, 1].std()
    device = publisher(broker.port)
    for payload in _payloads(faulty, time.time() - 250):
        device.publish("sensors/pump-a/telemetry", payload, qos=1)
    device.publish("sensors/pump-b/telemetry", b"{broken", qos=1)
    view = lambda: agent.service.status_view or {}  # noqa: E731
    assert wait_until(lambda: bool(view().get("recent_alerts")) and view()["rejected"].get("bad_json") == 1)
    assert agent.service.status_port is not None
    url = f"http://127.0.0.1:{agent.service.status_port}/"
    # The JSON behind the page: strict JSON, the agent's own counters.
    served = json.loads(urllib.request.urlopen(url + "status.json", timeout=10).read())
    assert served["agent_id"] == "edge-1" and served["counters"]["scored"] > 0
    assert served["devices"][0]["name"] in {"pump-a", "pump-b"} and served["rejected"] == {"bad_json": 1}
    dom = _browser(url, "--dump-dom")
    assert "EdgeGAN agent edge-1" in dom
    assert "pump-a" in dom and "<svg" in dom  # the device, with its sparkline
    assert "alert-row" in dom and ">start<" in dom and "s1" in dom  # the alert, with its top channel
    assert "bad_json" in dom  # the rejection, by reason
    assert 'http-equiv="refresh"' in dom
    shot = tmp_path / "status.png"
    _browser(url, f"--screenshot={shot}", "--window-size=1100,800", "--hide-scrollbars")
    assert shot.stat().st_size > 10_000
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(url + "nope", timeout=10)


def test_the_page_is_off_by_default_and_bound_to_localhost() -> None:
    from edge_agent.config import load_agent_config

    config = load_agent_config(None, {"bundle": "x"})
    assert config.status_page.port is None and config.status_page.address == "127.0.0.1"
