"""How large a fleet one simulator process keeps on schedule.

Usage: python -m benchmarks.simulator_scale [--bundle runs/demo/bundle] [--seconds 20]
1,000 devices at 1 Hz first (the target), then the fleet doubles until the process falls behind: achieved
rate under 97% of the planned one, or a reading published more than a second late. A bare subscriber counts
what reaches the broker, so the figure is delivered messages, not calls to publish.
Writes benchmarks/results/simulator_scale.json.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.environment import write_result
from edge_agent.bundle import load_bundle
from edge_agent.config import BrokerConfig
from edge_agent.simulator.fleet import Fleet, connect_publisher, finish_publishing
from edge_agent.simulator.scenario import Scenario
from trainer.demo.broker import free_port, start_mosquitto


class _Counter:
    def __init__(self, port: int) -> None:
        self.count = 0
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe("sensors/+/telemetry", qos=0)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.ready.wait(10)

    def _on_message(self, *_: object) -> None:
        self.count += 1

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_fleet(bundle_dir: Path, port: int, devices: int, rate_hz: float, seconds: float) -> dict[str, float]:
    """One fleet size: planned and achieved rates, worst lag."""
    scenario = Scenario(devices=devices, rate_hz=rate_hz, duration_s=seconds, seed=1, random=None)
    fleet = Fleet(load_bundle(bundle_dir), scenario)
    counter = _Counter(port)
    client = connect_publisher(BrokerConfig(port=port), client_id=f"scale-{devices}")
    report = fleet.run(client, seconds)
    finish_publishing(client, fleet.last_info)
    time.sleep(1.0)
    counter.close()
    planned = devices * rate_hz
    return {
        "devices": devices,
        "rate_hz": rate_hz,
        "planned_per_s": planned,
        "published_per_s": report.rate_per_s,
        "delivered_per_s": counter.count / report.seconds,
        "achieved_ratio": report.rate_per_s / planned,
        "max_lag_s": report.max_lag_s,
        "dropped": report.dropped,
    }


def _on_schedule(result: dict[str, float]) -> bool:
    return (
        result["achieved_ratio"] >= 0.97
        and result["delivered_per_s"] >= 0.97 * result["planned_per_s"]
        and result["max_lag_s"] <= 1.0
        and result["dropped"] == 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=Path("runs/demo/bundle"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-devices", type=int, default=64000)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        broker = start_mosquitto(Path(scratch), port, max_queued=1_000_000)
        try:
            devices = 1000
            while devices <= args.max_devices:
                result = run_fleet(args.bundle, port, devices, 1.0, args.seconds)
                runs.append(result)
                print(result, flush=True)
                if not _on_schedule(result):
                    break
                devices *= 2
        finally:
            broker.terminate()
            broker.wait(10)
    kept = [r for r in runs if _on_schedule(r)]
    report = {
        "runs": runs,
        "target_1000_devices_at_1hz_met": bool(runs and runs[0] in kept),
        "largest_fleet_on_schedule": max((r["devices"] for r in kept), default=0),
    }
    print(f"wrote {write_result('simulator_scale', report)}")


if __name__ == "__main__":
    main()
