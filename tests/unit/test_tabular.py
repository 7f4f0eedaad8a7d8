"""CSV reading as field exports come: separators, headers, timestamps, bad cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.errors import DataError
from edge_agent.tabular import parse_timestamp, read_table


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_separator_is_detected(tmp_path: Path, sep: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(
        sep.join(["time", "temp", "rpm"])
        + "\n"
        + "\n".join(sep.join([str(100 + i), f"{20 + i * 0.5}", f"{1500 + i}"]) for i in range(5))
        + "\n"
    )
    table = read_table(path)
    assert table.channels == ["temp", "rpm"]
    assert table.timestamp_column == "time"
    np.testing.assert_allclose(table.values[:, 1], [1500, 1501, 1502, 1503, 1504])
    np.testing.assert_allclose(table.timestamps, [100, 101, 102, 103, 104])


def test_file_without_header_gets_numbered_channels(tmp_path: Path) -> None:
    path = tmp_path / "machine.txt"
    path.write_text("0.1,0.2,0.3\n0.4,0.5,0.6\n")
    table = read_table(path)
    assert table.channels == ["ch1", "ch2", "ch3"]
    assert table.timestamps is None
    assert table.values.shape == (2, 3)


def test_iso_timestamp_column_found_by_content_and_text_column_left_out(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("when,status,value\n2026-01-01T00:00:00Z,ok,1.5\n2026-01-01 00:00:10,ok,2.5\n")
    table = read_table(path)
    assert table.timestamp_column == "when"
    assert table.channels == ["value"]
    assert table.timestamps is not None
    assert table.timestamps[1] - table.timestamps[0] == pytest.approx(10.0)


def test_missing_cells_become_nan(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n,3\nNaN,4\n")
    table = read_table(path)
    assert np.isnan(table.values[1:, 0]).all()
    assert table.values[2, 1] == 4


def test_columns_option_picks_and_orders_channels(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,c\n1,2,3\n")
    assert read_table(path, ["c", "a"]).channels == ["c", "a"]
    with pytest.raises(DataError, match="'?z'? not found|z not found"):
        read_table(path, ["z"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("name,status\nx,ok\ny,bad\n", "no numeric column"),
        ("a,b\n1,2\n3,oops\n4,5\n", r":3: column 'b' holds 'oops'"),
        ("a,b\n1,2\n3\n", r":3: 1 fields, expected 2"),
        ("a,b\n1,inf\n", "infinite"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_table(path)


def test_parse_timestamp_forms() -> None:
    assert parse_timestamp("1700000000.5") == 1700000000.5
    assert parse_timestamp("1970-01-01T00:01:00Z") == 60.0
    assert parse_timestamp("1970-01-01T01:00:00+01:00") == 0.0
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")
