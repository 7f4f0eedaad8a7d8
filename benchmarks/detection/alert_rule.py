"""Any detector's scores through the agent's own alert rule, so every detector is judged by the alarms a
deployment would raise, not only window by window.

The rule is `edge_agent.decision`'s with its default settings: an alert starts after 3 windows in a row above
the threshold and ends after 5 below 0.9 of it. It filters lone windows at the threshold and holds an alarm
through a dip, so it can raise a false-alarm rate as well as lower it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from benchmarks.detection import metrics
from edge_agent.decision import ANOMALOUS, Decider, DecisionConfig


def alert_states(scores: npt.NDArray[np.floating], threshold: float) -> npt.NDArray[np.bool_]:
    """Each row's state under the rule, fed one run's scores in time order (one device)."""
    decider = Decider(threshold, DecisionConfig())
    return np.fromiter(
        (
            decider.update("run", float(score), float(row)).state == ANOMALOUS
            for row, score in enumerate(scores)
        ),
        dtype=bool,
        count=len(scores),
    )


def counted_under_rule(
    scores: npt.NDArray[np.floating], threshold: float, labels: npt.NDArray[np.int8]
) -> metrics.Counts:
    """The point-wise counts of the rule's alarms against `labels`: a detector judged by what a deployment
    behind the agent would publish."""
    return metrics.count(alert_states(scores, threshold), labels)
