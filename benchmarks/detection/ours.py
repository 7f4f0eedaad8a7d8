"""EdgeGAN on a benchmark series: the real fit, the real scorer graphs, and the daemon's decision logic.

Thresholds are the bundle's own, calibrated by the fit on its holdout (the tail of the training part).
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.backends import open_scorer
from edge_agent.bundle import SCORER_FP32, SCORER_INT8, load_bundle

THRESHOLD_FILE = {"fp32": SCORER_FP32, "int8": SCORER_INT8}


@dataclass(frozen=True)
class GraphScores:
    """One precision's scores on the test windows, with the bundle's threshold and the cost."""

    scores: npt.NDArray[np.float64]
    threshold: float
    seconds: float
    levels: dict[str, float]  # the bundle's severity levels: name -> score


def score_graph(bundle_dir: Path, precision: str, windows: npt.NDArray[np.float32]) -> GraphScores:
    """Score raw windows with one of the bundle's ONNX graphs on ONNX Runtime, one thread."""
    bundle = load_bundle(bundle_dir)
    scorer = open_scorer(bundle, precision=precision, threads=1)
    scorer.warmup()
    start = time.perf_counter()
    parts = [scorer.score(windows[i : i + 512]).scores for i in range(0, len(windows), 512)]
    seconds = time.perf_counter() - start
    threshold = bundle.threshold_for(THRESHOLD_FILE[precision])
    levels = {name: level.value for name, level in threshold.levels.items()}
    return GraphScores(np.concatenate(parts).astype(np.float64), threshold.value, seconds, levels)


def daemon_states(
    bundle_dir: Path, test_csv: Path, out_csv: Path, history: int, level: str | None = None
) -> npt.NDArray[np.bool_]:
    """`edge-agent score` (the daemon's pipeline and alert logic, INT8): its anomaly state per test row,
    alerting at the bundle's threshold or at one of its severity levels."""
    command = [
        sys.executable, "-m", "edge_agent", "score",
        "--bundle", str(bundle_dir), "--data", str(test_csv), "--out", str(out_csv), "--precision", "int8",
    ]  # fmt: skip
    if level is not None:
        command += ["--level", level]
    subprocess.run(command, check=True, capture_output=True, text=True)
    with out_csv.open(newline="") as handle:
        states = [row["anomaly"] == "1" for row in csv.DictReader(handle)]
    return np.asarray(states[history:], dtype=bool)
