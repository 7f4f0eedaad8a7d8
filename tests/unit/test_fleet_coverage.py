"""fleet_load's loss count: readings in no scored window are counted, wherever the gap falls."""

from __future__ import annotations

from benchmarks.fleet_load import uncovered_readings

START = 1_800_000_000.0  # epoch seconds: the count must not depend on where time starts


def _scores(first: int, last: int, rate: float) -> list[float]:
    """Score timestamps for windows ending at readings first..last."""
    return [START + n / rate for n in range(first, last + 1)]


def test_an_unbroken_stream_loses_nothing_and_a_gap_is_counted_reading_by_reading() -> None:
    window, rate = 32, 2.0
    whole = _scores(window - 1, 199, rate)  # 200 readings: windows end at readings 31..199
    assert uncovered_readings(whole, 200, window, rate) == 0
    # Readings 100..109 never arrived: the windows that would hold them are missing, and the stream's
    # window restarts after the gap (its first score ends at reading 110 + 31).
    gapped = _scores(window - 1, 99, rate) + _scores(110 + window - 1, 199, rate)
    assert uncovered_readings(gapped, 200, window, rate) == 10
    assert uncovered_readings(whole[:-20], 200, window, rate) == 20  # the tail never scored
    assert uncovered_readings([], 200, window, rate) == 200
    assert uncovered_readings(whole + whole[:50], 200, window, rate) == 0  # a redelivery counts once
