"""The agent's alert rule over a run's scores, as the detection harnesses apply it to every detector."""

from __future__ import annotations

import numpy as np

from benchmarks.detection.alert_rule import alert_states


def test_the_alert_rule_ignores_lone_windows_and_holds_an_alarm_through_a_dip() -> None:
    threshold = 1.0
    scores = np.zeros(40)
    scores[[3, 7, 8]] = 2.0  # a lone window, then two in a row: neither starts an alarm
    scores[20:23] = 2.0  # three in a row start one on the third
    scores[23:26] = 0.95  # below the threshold but above 0.9 of it: the alarm holds
    # then zeros: five in a row below 0.9 end it on row 30
    states = alert_states(scores, threshold)
    assert not states[:22].any()
    assert states[22:30].all()
    assert not states[30:].any()
    assert states.mean() == 8 / 40
