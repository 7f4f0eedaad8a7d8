"""`make bench`: every benchmark in turn, one at a time so they do not disturb each other's timings."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "benchmarks.fit_speed",
    "benchmarks.scorer_speed",
    "benchmarks.agent_throughput",
    "benchmarks.simulator_scale",
    "benchmarks.augmentation",
    "benchmarks.synth_quality",
    "benchmarks.detection.run",
    "benchmarks.detection.tep",
    "benchmarks.detection.small_data",
    "benchmarks.fleet_detection",
    "benchmarks.detection.speed",
    "benchmarks.fleet_load",
)


def main() -> int:
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        code = subprocess.call([sys.executable, "-m", module])
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
