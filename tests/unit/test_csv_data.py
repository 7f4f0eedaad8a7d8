"""Cleaning training data: time order, gaps, empty channels, folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.errors import DataError
from tests.conftest import correlated_series, write_csv
from trainer.config import DataConfig
from trainer.csv_data import load_training_data


def test_short_gaps_are_interpolated_and_reported(tmp_path: Path) -> None:
    values = correlated_series(100)
    values[10:13, 1] = np.nan
    data = load_training_data(write_csv(tmp_path / "d.csv", values), DataConfig(max_gap_rows=5))
    filled = data.segments[0].values
    assert data.report.interpolated_cells == 3
    assert not np.isnan(filled).any()
    # Linear between the neighbours.
    step = (values[13, 1] - values[9, 1]) / 4
    np.testing.assert_allclose(filled[10:13, 1], values[9, 1] + step * np.arange(1, 4), atol=1e-4)


def test_long_gap_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    values = correlated_series(100)
    values[40:50, 2] = np.nan
    path = write_csv(tmp_path / "d.csv", values)
    # Row index 40 is on line 42 (header is line 1).
    with pytest.raises(DataError, match=r"d\.csv:42: channel 's2' missing for 10 rows"):
        load_training_data(path, DataConfig(max_gap_rows=5))


def test_long_gap_splits_when_asked(tmp_path: Path) -> None:
    values = correlated_series(100)
    values[40:50, 2] = np.nan
    data = load_training_data(write_csv(tmp_path / "d.csv", values), DataConfig(on_long_gap="split"))
    assert [len(s.values) for s in data.segments] == [40, 50]


def test_missing_timestamps_are_filled_and_long_time_gaps_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    rows = ["time,a"] + [f"{t},{t * 2.0}" for t in [0, 1, 2, 3, 6, 7, 8, 9]]
    path.write_text("\n".join(rows) + "\n")
    data = load_training_data(path, DataConfig(max_gap_rows=2))
    assert data.report.inserted_rows == 2
    np.testing.assert_allclose(data.segments[0].values[:, 0], np.arange(10) * 2.0)
    assert data.sample_period_s == 1.0
    with pytest.raises(DataError, match=r"d\.csv:6: 2 readings missing"):
        load_training_data(path, DataConfig(max_gap_rows=1))


def test_rows_are_ordered_by_time(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("ts,a\n3,30\n1,10\n2,20\n")
    data = load_training_data(path, DataConfig())
    np.testing.assert_allclose(data.segments[0].values[:, 0], [10, 20, 30])


def test_all_nan_channel_is_refused(tmp_path: Path) -> None:
    values = correlated_series(50)
    values[:, 1] = np.nan
    with pytest.raises(DataError, match="s1 hold no values"):
        load_training_data(write_csv(tmp_path / "d.csv", values), DataConfig())


def test_folder_files_must_agree_on_channels(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", correlated_series(50), names=["x", "y", "z"])
    write_csv(tmp_path / "b.csv", correlated_series(50), names=["x", "y", "w"])
    with pytest.raises(DataError, match=r"b\.csv: channels .* differ"):
        load_training_data(tmp_path, DataConfig())


def test_folder_gives_one_segment_per_file_and_a_stable_fingerprint(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", correlated_series(50, seed=1))
    write_csv(tmp_path / "b.csv", correlated_series(70, seed=2))
    first = load_training_data(tmp_path, DataConfig())
    assert [len(s.values) for s in first.segments] == [50, 70]
    assert first.fingerprint == load_training_data(tmp_path, DataConfig()).fingerprint
    write_csv(tmp_path / "b.csv", correlated_series(70, seed=3))
    assert first.fingerprint != load_training_data(tmp_path, DataConfig()).fingerprint


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds no"):
        load_training_data(tmp_path, DataConfig())
