"""Labelled series as train/test arrays: NAB (univariate), SMD and TEP (multivariate).

Every detector sees exactly these arrays. Training uses the train part only; labelled rows inside it are
blanked (NaN), so no window that touches a known anomaly is trained or calibrated on. The test part follows
the train part in time, and each test row is scored by the window that ends on it, with the end of the train
part as history (so every test row gets a score).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "datasets"
NAB_GROUPS = ("realKnownCause", "realAWSCloudwatch")
SMD_MACHINES = ("machine-1-6", "machine-2-1")
NAB_TRAIN_SHARE = 0.5


@dataclass(frozen=True)
class LabelledSeries:
    """One series split in time; `train` has NaN rows where labels were blanked."""

    name: str
    group: str
    channels: list[str]
    train: npt.NDArray[np.float64]  # [rows, channels]
    test: npt.NDArray[np.float64]  # [rows, channels]
    test_labels: npt.NDArray[np.int8]  # [rows]
    blanked_train_rows: int

    def write_train_csv(self, path: Path) -> Path:
        """The train part as a headed CSV without timestamps; blanked rows are empty cells."""
        _write_csv(path, self.channels, self.train)
        return path

    def write_test_csv(self, path: Path, history: int) -> Path:
        """The test part with `history` rows of the train part before it (labels not needed there)."""
        tail = self.train[-history:] if history else self.train[:0]
        tail = fill_nan(tail)
        _write_csv(path, self.channels, np.vstack([tail, self.test]))
        return path


def fill_nan(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """History rows only: carry the last finite value forward (then backward) so windows are defined."""
    out = values.copy()
    for column in out.T:
        finite = np.isfinite(column)
        if not finite.any():
            column[:] = 0.0
            continue
        index = np.where(finite, np.arange(len(column)), 0)
        np.maximum.accumulate(index, out=index)
        column[:] = column[index]
        first = int(np.argmax(finite))
        column[:first] = column[first]
    return out


def _write_csv(path: Path, channels: list[str], values: npt.NDArray[np.float64]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(channels)
        writer.writerows(["" if np.isnan(v) else f"{v:.9g}" for v in row] for row in values)


def nab_series(root: Path, relative: str, before_first_anomaly: bool = False) -> LabelledSeries:
    """First half trains (labelled windows blanked), second half is the labelled test part; with
    `before_first_anomaly` the training part also ends at the first labelled row (nothing blanked)."""
    path = root / "nab" / "data" / relative
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle)][1:]
    windows = json.loads((root / "nab" / "labels" / "combined_windows.json").read_text())[relative]
    stamps = [datetime.fromisoformat(row[0]) for row in rows]
    labels = np.zeros(len(rows), dtype=np.int8)
    for start, end in windows:
        lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
        labels[[i for i, t in enumerate(stamps) if lo <= t <= hi]] = 1
    values = np.array([[float(row[1])] for row in rows])
    cut = int(len(rows) * NAB_TRAIN_SHARE)
    if before_first_anomaly and labels.any():
        cut = min(len(rows) // 2, int(np.argmax(labels)))
    train = values[:cut].copy()
    train[labels[:cut] == 1] = np.nan
    group, stem = relative.split("/")
    return LabelledSeries(
        name=Path(stem).stem,
        group=f"NAB {group}",
        channels=["value"],
        train=train,
        test=values[cut:],
        test_labels=labels[cut:],
        blanked_train_rows=int(labels[:cut].sum()),
    )


def smd_series(root: Path, machine: str) -> LabelledSeries:
    """SMD's own split: train file (unlabelled, mostly normal) and the labelled test file."""
    train = np.loadtxt(root / "smd" / "train" / f"{machine}.txt", delimiter=",")
    test = np.loadtxt(root / "smd" / "test" / f"{machine}.txt", delimiter=",")
    labels = np.loadtxt(root / "smd" / "test_label" / f"{machine}.txt", dtype=np.int8)
    return LabelledSeries(
        name=machine,
        group="SMD",
        channels=[f"m{i + 1}" for i in range(train.shape[1])],
        train=train,
        test=test,
        test_labels=labels,
        blanked_train_rows=0,
    )


TEP_RUNS = 22  # d00 (normal) and faults 1-21


def tep_runs(root: Path) -> tuple[LabelledSeries, dict[int, npt.NDArray[np.float64]]]:
    """TEP's normal training run as a series (its test part is d00_te) and every test run by fault number.

    d00.dat is stored transposed (52 rows of 500 samples) in the Braatz files; every other file is
    samples x 52. Labels: d00_te is all normal; in each fault run the fault enters after row 160.
    """
    folder = root / "tep"
    train = np.loadtxt(folder / "d00.dat.gz")
    if train.shape[0] == 52:
        train = train.T
    tests = {fault: np.loadtxt(folder / f"d{fault:02d}_te.dat.gz") for fault in range(TEP_RUNS)}
    series = LabelledSeries(
        name="d00",
        group="TEP",
        channels=[f"xmeas{i + 1}" for i in range(41)] + [f"xmv{i + 1}" for i in range(11)],
        train=train,
        test=tests[0],
        test_labels=np.zeros(len(tests[0]), dtype=np.int8),
        blanked_train_rows=0,
    )
    return series, tests


NAB_EVERY = {"realKnownCause": 1, "realAWSCloudwatch": 2}  # AWS: every second file, for run time


def nab_files(root: Path, group: str, every: int | None = None) -> list[str]:
    """The group's series present in this copy, in name order; of realAWSCloudwatch every second one.

    Each series costs minutes (seven detectors, two of them neural networks trained on it); 9 of the 17
    AWS files keep a full run near an hour on two cores. The choice is by name order, not by result.
    """
    folder = root / "nab" / "data" / group
    files = sorted(f"{group}/{path.name}" for path in folder.glob("*.csv"))
    return files[:: every or NAB_EVERY.get(group, 1)]


def load_all(
    root: Path, groups: tuple[str, ...] = ("realKnownCause", "realAWSCloudwatch", "SMD")
) -> list[LabelledSeries]:
    """Every series of the chosen groups."""
    series: list[LabelledSeries] = []
    for group in groups:
        if group == "SMD":
            series += [smd_series(root, machine) for machine in SMD_MACHINES]
        else:
            series += [nab_series(root, relative) for relative in nab_files(root, group)]
    return series
