"""Does PCA Q leave a window's level out of its residual, and which AWS test halves are noisier than training?

Usage: python -m benchmarks.detection.level_in_pca [--datasets ../shared/datasets]
Per realAWSCloudwatch series, on the benchmark's own windows: how much of the constant (level) direction lies
inside the components PCA Q keeps (1: Q's residual cannot see a change of level), its alignment with the first
component, and the median within-window spread of the training and test windows. Writes
benchmarks/results/level_in_pca.json (round 5 of the detection summary).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.detection.baselines import PcaDetector
from benchmarks.detection.datasets import DEFAULT_ROOT, load_all
from benchmarks.detection.run import benchmark_config, prepare
from benchmarks.environment import write_result


def measure(root: Path) -> dict[str, dict[str, float | int]]:
    """The figures per series, with the benchmark's default windows and normalisation."""
    config = benchmark_config(quick=False)
    out: dict[str, dict[str, float | int]] = {}
    for series in load_all(root, ("realAWSCloudwatch",)):
        with tempfile.TemporaryDirectory() as scratch:
            prepared = prepare(series, config, Path(scratch))
        train = prepared.normalised(prepared.sets.train)
        detector = PcaDetector("Q")
        detector.fit(train)
        length = train.shape[1] * train.shape[2]
        level = np.ones(length) / np.sqrt(length)
        test = prepared.normalised(prepared.test_windows)
        out[series.name] = {
            "components_kept": int(detector.components.shape[0]),
            "level_inside_kept_components": float(np.linalg.norm(detector.components @ level)),
            "level_alignment_first_component": float(abs(detector.components[0] @ level)),
            "train_window_spread_median": float(np.median(train.std(axis=1))),
            "test_window_spread_median": float(np.median(test.std(axis=1))),
        }
        print(series.name, out[series.name], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args()
    print(f"wrote {write_result('level_in_pca', {'series': measure(args.datasets)})}")


if __name__ == "__main__":
    main()
