"""The TEP runner's figures: detection rate after the fault's onset, false alarms before it and on d00_te."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.detection.tep import FAULT_ONSET, HARD_FAULTS, _rates, _summary


def test_rates_split_each_run_at_the_fault_onset() -> None:
    flags = np.zeros(960, dtype=bool)
    flags[FAULT_ONSET + 100 :] = True  # detected 100 rows late
    flags[:16] = True  # 16 false alarms before the fault enters
    rates = _rates(flags, fault=4)
    assert rates["detection_rate"] == (960 - FAULT_ONSET - 100) / (960 - FAULT_ONSET)
    assert rates["false_alarm_rate_before_onset"] == 16 / FAULT_ONSET
    assert _rates(flags, fault=0) == {"false_alarm_rate": float(flags.mean())}  # d00_te: every row is normal


def test_the_headline_mean_leaves_out_the_faults_known_to_be_invisible() -> None:
    per_run = {0: {"false_alarm_rate": 0.01}}
    for fault in range(1, 22):
        detected = 0.0 if fault in HARD_FAULTS else 0.9
        per_run[fault] = {"detection_rate": detected, "false_alarm_rate_before_onset": 0.02}
    summary = _summary(per_run)
    assert summary["mean_detection_rate"] == pytest.approx(0.9)
    assert summary["false_alarm_rate_d00_te"] == 0.01
    assert summary["false_alarm_rate_before_onset"] == pytest.approx(0.02)
