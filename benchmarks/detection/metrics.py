"""Point-wise, ranking and event-level metrics for one series' test rows, and pooling over a group.

Point-wise metrics count every test row on its own. Point-adjusted F1 (a segment counts as fully detected
once any row in it is flagged) is computed only as a secondary, inflated figure, next to the all-ones and
random-alarm detectors that show how much it inflates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Counts:
    """Confusion counts plus the event tally, so a group's rows can be pooled before ratios are taken."""

    tp: int
    fp: int
    fn: int
    tn: int
    events: int
    events_detected: int
    delay_rows_sum: int
    pa_tp: int
    pa_fp: int
    pa_fn: int

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values(), strict=True)))

    def summary(self) -> dict[str, float | None]:
        """Ratios of the (pooled) counts; None where a ratio has no denominator."""
        precision = _ratio(self.tp, self.tp + self.fp)
        recall = _ratio(self.tp, self.tp + self.fn)
        return {
            "precision": precision,
            "recall": recall,
            "f1": _f1(self.tp, self.fp, self.fn),
            "false_alarm_rate": _ratio(self.fp, self.fp + self.tn),
            "miss_rate": _ratio(self.fn, self.tp + self.fn),
            "event_recall": _ratio(self.events_detected, self.events),
            "mean_delay_rows": _ratio(self.delay_rows_sum, self.events_detected),
            "point_adjusted_f1": _f1(self.pa_tp, self.pa_fp, self.pa_fn),
        }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def segments(labels: npt.NDArray[np.integer]) -> list[tuple[int, int]]:
    """Runs of 1 as [start, end) row ranges."""
    padded = np.concatenate([[0], labels.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def point_adjust(predicted: Bools, labels: npt.NDArray[np.integer]) -> Bools:
    """OmniAnomaly's adjustment: one flagged row in a labelled segment flags the whole segment."""
    adjusted = predicted.copy()
    for start, end in segments(labels):
        if predicted[start:end].any():
            adjusted[start:end] = True
    return adjusted


def count(predicted: Bools, labels: npt.NDArray[np.integer]) -> Counts:
    """Confusion counts, event detection and delay, and point-adjusted counts for one series."""
    truth = labels.astype(bool)
    detected, delay = 0, 0
    events = segments(labels)
    for start, end in events:
        hits = np.flatnonzero(predicted[start:end])
        if len(hits):
            detected += 1
            delay += int(hits[0])
    adjusted = point_adjust(predicted, labels)
    return Counts(
        tp=int((predicted & truth).sum()),
        fp=int((predicted & ~truth).sum()),
        fn=int((~predicted & truth).sum()),
        tn=int((~predicted & ~truth).sum()),
        events=len(events),
        events_detected=detected,
        delay_rows_sum=delay,
        pa_tp=int((adjusted & truth).sum()),
        pa_fp=int((adjusted & ~truth).sum()),
        pa_fn=int((~adjusted & truth).sum()),
    )


def at_most_false_alarms(
    scores: npt.NDArray[np.floating], labels: npt.NDArray[np.integer], false_alarms: int
) -> Bools:
    """The flags of the lowest threshold that raises at most `false_alarms` alarms on normal rows.

    An oracle: it reads the test labels, so it ranks detectors at a matched false-alarm count instead of
    at their calibrated thresholds. Tied scores are flagged together or not at all.
    """
    normal = np.sort(scores[labels == 0])[::-1]
    if false_alarms >= len(normal):
        return np.ones(len(scores), dtype=bool)
    return np.asarray(scores > normal[max(false_alarms, 0)], dtype=bool)


def average_precision(scores: npt.NDArray[np.floating], labels: npt.NDArray[np.integer]) -> float | None:
    """AUC-PR as average precision (scikit-learn's definition); None when the series has no positives."""
    if not labels.any():
        return None
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels.astype(int), scores))


def pr_curve(
    scores: npt.NDArray[np.floating], labels: npt.NDArray[np.integer]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Precision and recall along the score ranking, for plots."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(labels.astype(int), scores)
    return precision, recall


def random_alarms(labels: npt.NDArray[np.integer], rate: float, seeds: int = 5) -> list[Counts]:
    """A detector that flags a random `rate` of rows: the floor any score must clear."""
    out = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        out.append(count(rng.random(len(labels)) < rate, labels))
    return out
