"""False-alarm episodes: what an operator counts as separate false alerts."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from benchmarks.detection.budget_sweep import false_alarm_episodes, pooled
from benchmarks.detection.metrics import Counts


def test_an_episode_is_a_run_of_flagged_normal_rows_and_a_labelled_row_splits_it() -> None:
    labels = np.array([0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0])
    flags = np.array([1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1], dtype=bool)
    # runs of flagged normal rows: rows 0-2, row 4 (row 3 is labelled), row 6, row 11
    assert false_alarm_episodes(flags, labels) == 4
    assert false_alarm_episodes(flags & (labels == 1), labels) == 0
    assert false_alarm_episodes(np.ones(5, dtype=bool), np.zeros(5, dtype=np.int8)) == 1


def test_counts_are_pooled_before_the_ratios_are_taken() -> None:
    def tally(tp: int, fp: int, fn: int, tn: int, episodes: int) -> dict[str, object]:
        counts = Counts(
            tp, fp, fn, tn, events=1, events_detected=0, delay_rows_sum=0, pa_tp=0, pa_fp=0, pa_fn=0
        )
        return {"counts": asdict(counts), "episodes": episodes}

    one = {"d": {"p": tally(9, 1, 1, 89, episodes=1)}}
    two = {"d": {"p": tally(0, 9, 10, 81, episodes=3)}}
    row = pooled([one, two])["d"]["p"]
    assert row["false_alarms"] == 10 and row["episodes"] == 4
    assert row["false_alarm_rate"] == 10 / 180
    assert row["f1"] == 2 * (9 / 19) * (9 / 20) / (9 / 19 + 9 / 20)
