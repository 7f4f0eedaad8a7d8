"""Fit time with default settings: an 8-channel CSV of 10,000 rows and a 400-row per-asset CSV.

Usage: python -m benchmarks.fit_speed [--name fit_speed]    Writes benchmarks/results/NAME.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks.environment import write_result
from trainer.build import build_bundle
from trainer.config import TrainConfig
from trainer.demo.pump_data import write_pump_csv

CASES = {"8ch_10000_rows": 10_000, "8ch_400_rows": 400}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # a name per machine: fit times differ 2.5x between CPUs (README, round 41), so one file cannot hold both
    parser.add_argument("--name", default="fit_speed", help="results file: benchmarks/results/NAME.json")
    args = parser.parse_args()
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, rows in CASES.items():
            data = write_pump_csv(Path(scratch) / f"{name}.csv", rows=rows, seed=3)
            start = time.perf_counter()
            result = build_bundle(data, Path(scratch) / name, TrainConfig())
            seconds = time.perf_counter() - start
            detection = result.bundle.manifest.validation["detection"]
            report[name] = {
                "seconds": round(seconds, 1),
                "detection": detection,
                "int8_vs_fp32": result.bundle.manifest.validation["int8_vs_fp32"],
            }
            print(f"{name}: {seconds:.1f} s")
    print(f"wrote {write_result(args.name, report)}")


if __name__ == "__main__":
    main()
