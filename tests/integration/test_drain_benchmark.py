"""The drain benchmark's clock (benchmarks/agent_throughput.py) against a real Mosquitto and agent: it times
most of the backlog, its rate stays of the bare subscriber's order, and a clock that would start after the
backlog is in is refused rather than reported (the bug that once read 6e9 readings/s)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import agent_throughput as bench
from edge_agent.bundle import load_bundle
from trainer.demo.broker import free_port


def _backlog(bundle: Path, count: int) -> bench.Backlog:
    manifest = load_bundle(bundle).manifest
    means, scales = np.array(manifest.normalisation.mean), np.array(manifest.normalisation.scale)
    return bench.Backlog(bench._payloads(manifest.channels, means, scales, count, time.time() - 600), 1)


@pytest.fixture
def bench_broker(tmp_path: Path) -> tuple[Path, int]:
    port = free_port()
    process: subprocess.Popen[bytes] = bench._start_broker(tmp_path, port)
    yield tmp_path, port  # type: ignore[misc]
    process.terminate()
    process.wait(10)


def test_the_drain_times_most_of_the_backlog_at_a_rate_of_the_bare_subscribers_order(
    tiny_bundle: Path, bench_broker: tuple[Path, int]
) -> None:
    folder, port = bench_broker
    summary = bench.drain_rates(port, folder, tiny_bundle.resolve(), _backlog(tiny_bundle, 4000), rounds=1)
    (run,) = summary["rounds"]  # type: ignore[misc]
    assert run["agent_share_timed"] >= 0.5
    # An agent cannot take a backlog many times faster than a subscriber that only decodes it; a clock that
    # started late would (the old one read 300,000x).
    assert 0 < run["ratio"] < 3, run
    if bench.libmosquitto_available():
        assert run["libmosquitto_subscriber_readings_per_s"] > 0


def test_a_clock_that_would_start_after_the_backlog_is_refused() -> None:
    # Reports every 50 ms while 1,000 messages go at 10,000/s: timed from the first report.
    steady = [(0.05 * i, min(1000, 1 + 500 * i)) for i in range(3)]
    rate, share = bench.drain_clock(steady, 1000)
    assert share == pytest.approx(0.999) and rate == pytest.approx(999 / 0.1)
    # The first report that shows progress already shows the whole backlog: nothing left to time.
    with pytest.raises(RuntimeError, match="before its first stats report"):
        bench.drain_clock([(1.0, 1000)], 1000)
    with pytest.raises(RuntimeError, match="before its first stats report"):
        bench.drain_clock([(1.0, 900), (1.01, 1000)], 1000)
    with pytest.raises(RuntimeError, match="took 600 of 1000"):
        bench.drain_clock([(1.0, 100), (2.0, 600)], 1000)
