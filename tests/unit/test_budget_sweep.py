"""False-alarm episodes: what an operator counts as separate false alerts."""

from __future__ import annotations

import numpy as np

from benchmarks.detection.budget_sweep import false_alarm_episodes, pooled


def test_an_episode_is_a_run_of_flagged_normal_rows_and_a_labelled_row_splits_it() -> None:
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0])
    flags = np.array([1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1], dtype=bool)
    # runs of flagged normal rows: rows 0-2, row 4 (row 3 is labelled), row 6, row 11
    assert false_alarm_episodes(flags, labels) == 4
    assert false_alarm_episodes(flags & (labels == 1), labels) == 0
    assert false_alarm_episodes(np.ones(5, dtype=bool), np.zeros(5, dtype=np.int8)) == 1


def test_counts_are_pooled_before_the_ratios_are_taken() -> None:
    one = {"d": {"p": {"tp": 9, "fp": 1, "fn": 1, "tn": 89, "episodes": 1}}}
    two = {"d": {"p": {"tp": 0, "fp": 9, "fn": 10, "tn": 81, "episodes": 3}}}
    row = pooled([one, two])["d"]["p"]
    assert row["false_alarms"] == 10 and row["episodes"] == 4
    assert row["false_alarm_rate"] == 10 / 180
    assert row["f1"] == 2 * (9 / 19) * (9 / 20) / (9 / 19 + 9 / 20)
