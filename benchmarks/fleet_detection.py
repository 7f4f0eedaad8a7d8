"""The demo's simulated fleet, many device-hours, through the daemon's decoder and pipeline without a broker.

Usage: python -m benchmarks.fleet_detection [--bundle runs/demo/bundle] [--devices 80] [--duration 360]
                                            [--clean-devices 100] [--clean-duration 360] [--seed 11]
Three runs on one bundle with the agent's default settings (INT8, default decision): the demo's scenario
(a quarter of the devices with injected anomalies, four with transport faults), a clean fleet
(`--inject none`: generated streams only), and the same clean fleet unjudged (`--no-vet`: the generator's
streams as drawn, which is what measures the generator). Without --bundle it fits the demo's bundle first.
Writes benchmarks/results/fleet_detection.json: recall per fault kind, false alarms per device-hour, the
clean fleets' alerts per device-hour (the issue's bars: recall >= 0.8 per kind, <= 1 false alarm per
device-hour, <= 0.1 alert per clean device-hour over >= 5 device-hours) and what the judge redrew.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from benchmarks.environment import write_result
from edge_agent.bundle import load_bundle
from edge_agent.config import BackendConfig
from edge_agent.decision import DecisionConfig
from edge_agent.pipeline import open_pipeline
from edge_agent.simulator.fleet import Fleet
from edge_agent.simulator.offline_fleet import OfflineFleetResult, run_offline
from edge_agent.simulator.scenario import Scenario
from trainer.demo.run import demo_scenario

REPO = Path(__file__).resolve().parents[1]
RATE_HZ = 10.0
START = 1.8e9  # device clocks start here: offline, no wall clock is involved


def run(bundle_dir: Path, scenario: Scenario) -> OfflineFleetResult:
    """One scenario through a fresh pipeline (INT8, default decisions)."""
    pipeline = open_pipeline(bundle_dir, BackendConfig(), DecisionConfig())
    return run_offline(pipeline, Fleet(load_bundle(bundle_dir), scenario, start=START), scenario)


def _fit_demo_bundle(folder: Path) -> Path:
    from trainer.build import build_bundle
    from trainer.config import TrainConfig
    from trainer.demo.pump_data import write_pump_csv

    data = write_pump_csv(folder / "pump_normal.csv", rows=6000, seed=7)
    return build_bundle(data, folder / "bundle", TrainConfig()).bundle.path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="a demo bundle; fitted into runs/fleet_detection without")
    parser.add_argument("--devices", type=int, default=80)
    parser.add_argument("--duration", type=float, default=360.0, help="device seconds per device")
    parser.add_argument("--clean-devices", type=int, default=100)
    parser.add_argument("--clean-duration", type=float, default=360.0)
    parser.add_argument("--seed", type=int, default=11, help="scenario seed (the demo uses 7)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bundle = args.bundle or _fit_demo_bundle(REPO / "runs" / "fleet_detection")
    faults = demo_scenario(args.devices, RATE_HZ, args.duration, args.seed)
    clean = demo_scenario(args.clean_devices, RATE_HZ, args.clean_duration, args.seed + 1).model_copy(
        update={"random": None, "events": []}
    )
    raw = clean.model_copy(update={"vet": False})
    report: dict[str, object] = {"bundle": str(bundle), "rate_hz": RATE_HZ, "seed": args.seed}
    for name, scenario in (("faults", faults), ("clean", clean), ("clean_unjudged", raw)):
        result = run(bundle, scenario)
        print(f"== {name}: {scenario.devices} devices x {scenario.duration_s:.0f} s")
        print(result.evaluation.table())
        report[name] = {
            "devices": scenario.devices,
            "duration_s": scenario.duration_s,
            "readings": result.published,
            "scored": result.scored,
            "seconds": round(result.seconds, 1),
            "evaluation": result.evaluation.as_dict(),
            "vetting": result.vetting,
        }
    print(f"written to {write_result('fleet_detection', report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
