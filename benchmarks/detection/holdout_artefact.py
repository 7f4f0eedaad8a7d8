"""How much of SMD machine-1-6's thresholded F1 comes from one near-constant channel in the holdout?

Usage: python -m benchmarks.detection.holdout_artefact [--bundle DIR] [--channel m17]
Channel m17 of machine-1-6 barely moves in training (spread 0.0011, in SMD's 0-1 units) and twitches in the
holdout; with a plain z-score those twitches are hundreds of spreads. This re-derives each detector's
threshold (the benchmark's POT rule) from the same holdout with that one channel held at its training
mean, and scores the unchanged test part with it. If F1 falls apart, the detector's result on this series
rests on the artefact, not on what it learned. EdgeGAN uses `--bundle` (a default-settings bundle fitted on
this series, e.g. from the benchmark's cache) or fits one. Writes benchmarks/results/holdout_artefact.json.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.detection import baselines, metrics
from benchmarks.detection.datasets import DEFAULT_ROOT, smd_series
from benchmarks.detection.ours import score_graph
from benchmarks.detection.run import benchmark_config, calibrated_threshold, prepare
from benchmarks.environment import write_result
from trainer.build import build_bundle
from trainer.config import TrainConfig


def _row(
    test: npt.NDArray[np.float64],
    holdout: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int8],
    config: TrainConfig,
) -> dict[str, float | None]:
    threshold = calibrated_threshold(holdout, config)
    summary = metrics.count(test > threshold, labels).summary()
    return {"threshold": threshold, "f1": summary["f1"], "false_alarm_rate": summary["false_alarm_rate"]}


def evaluate(
    root: Path, channel: str, bundle: Path | None, scratch: Path
) -> dict[str, dict[str, dict[str, float | None]]]:
    series = smd_series(root, "machine-1-6")
    # Round 3 measured the holdout rule, the one this study is about: the training windows take no part.
    config = benchmark_config(quick=False, settings={"score.calibrate_on": "holdout"})
    prepared = prepare(series, config, scratch / "work")
    index = series.channels.index(channel)
    still = prepared.sets.holdout.copy()
    still[:, :, index] = prepared.sets.normaliser.mean[index]  # the one change: the channel stops moving
    pca = baselines.PcaDetector("T2")
    pca.fit(prepared.normalised(prepared.sets.train))
    if bundle is None:
        bundle = scratch / "bundle"
        build_bundle(prepared.train_csv, bundle, config)
    fitted = bundle
    scorers: dict[str, Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float64]]] = {
        "PCA T2": lambda windows: pca.score(prepared.normalised(windows)),
        "EdgeGAN ORT FP32": lambda windows: score_graph(fitted, "fp32", windows).scores,
    }
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    print(f"machine-1-6, {channel}: training spread {prepared.sets.normaliser.scale[index]:.4f}")
    for detector, score in scorers.items():
        test = score(prepared.test_windows)
        rows = {"holdout as is": prepared.sets.holdout, f"holdout, {channel} held at its mean": still}
        out[detector] = {
            name: _row(test, score(holdout), series.test_labels, config) for name, holdout in rows.items()
        }
        for name, row in out[detector].items():
            print(f"{detector:18s} {name:32s} threshold {row['threshold']:10.1f}  F1 {row['f1']:.3f}  "
                  f"FAR {row['false_alarm_rate']:.4f}")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--channel", default="m17")
    parser.add_argument("--bundle", type=Path, help="EdgeGAN bundle fitted on machine-1-6 (default settings)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        report = evaluate(args.datasets, args.channel, args.bundle, Path(scratch))
    print(f"wrote {write_result('holdout_artefact', {'channel': args.channel, 'detectors': report})}")


if __name__ == "__main__":
    main()
