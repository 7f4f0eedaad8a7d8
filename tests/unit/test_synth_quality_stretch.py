"""The training-stretch reference of benchmarks.synth_quality: the process itself as the generator."""

from __future__ import annotations

import numpy as np

from benchmarks.synth_quality import training_stretch


def test_stretch_and_rest_split_the_training_rows_without_overlap() -> None:
    rows = np.arange(1000, dtype=np.float32).reshape(-1, 1)
    for seed in range(5):
        stretch, rest = training_stretch(rows, 300, seed)
        assert len(stretch) == 300 and len(rest) == 700
        assert np.all(np.diff(stretch[:, 0]) == 1)  # consecutive rows
        assert not set(stretch[:, 0]) & set(rest[:, 0])
        assert sorted(np.concatenate([stretch, rest])[:, 0]) == list(rows[:, 0])


def test_stretch_takes_at_most_half_so_the_rest_holds_as_many() -> None:
    rows = np.arange(400, dtype=np.float32).reshape(-1, 1)
    stretch, rest = training_stretch(rows, 6000, seed=1)
    assert len(stretch) == 200 and len(rest) == 200


def test_the_start_differs_by_seed() -> None:
    rows = np.arange(10_000, dtype=np.float32).reshape(-1, 1)
    starts = {float(training_stretch(rows, 1000, seed)[0][0, 0]) for seed in range(6)}
    assert len(starts) > 1
