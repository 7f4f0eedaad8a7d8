"""Detectors compared at matched false alarms: ranking quality apart from threshold calibration.

The bar compares F1 at each detector's own threshold, taken from the training part. When a test part drifts
away from the training part, that comparison mixes two things: how well a detector ranks the test rows, and
how far its training-part threshold happens to land from the drifted normal rows. Here, on each series,
EdgeGAN's threshold is set (with the test labels: an oracle, never a deployable threshold) so that it raises
no more false alarms than the baseline did at the baseline's own threshold, and the other way round. The
series are then pooled as in the main tables. A detector that wins both ways ranks better at both operating
points; one that wins only at its own threshold won on calibration.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.detection import metrics

Summary = dict[str, float | None]


def _pooled(parts: list[metrics.Counts]) -> Summary:
    return sum(parts[1:], parts[0]).summary()


def _false_alarms(entry: dict[str, object]) -> int:
    counts: dict[str, int] = entry["counts"]  # type: ignore[assignment]
    return int(counts["fp"])


Traces = dict[str, npt.NDArray[np.float64]]


def compare(
    members: list[dict[str, object]], traces: list[Traces], ours: str, baseline: str
) -> dict[str, Summary]:
    """Pooled over `members` (series entries, with their score `traces` in the same order): each detector at
    its own threshold and at the other's false-alarm count, series by series."""
    at_own: dict[str, list[metrics.Counts]] = {ours: [], baseline: []}
    at_other: dict[str, list[metrics.Counts]] = {ours: [], baseline: []}
    for member, trace in zip(members, traces, strict=True):
        labels: npt.NDArray[np.int8] = trace["labels"].astype(np.int8)
        detectors: dict[str, dict[str, object]] = member["detectors"]  # type: ignore[assignment]
        for name, other in ((ours, baseline), (baseline, ours)):
            at_own[name].append(metrics.Counts(**detectors[name]["counts"]))  # type: ignore[arg-type]
            allowed = _false_alarms(detectors[other])
            flags = metrics.at_most_false_alarms(trace[name], labels, allowed)
            at_other[name].append(metrics.count(flags, labels))
    return {
        "ours": _pooled(at_own[ours]),
        "ours_at_baseline_false_alarms": _pooled(at_other[ours]),
        "baseline": _pooled(at_own[baseline]),
        "baseline_at_our_false_alarms": _pooled(at_other[baseline]),
    }


def comparisons(members: list[dict[str, object]], ours: str) -> dict[str, dict[str, Summary]] | None:
    """`compare` for every baseline of the group; None when a member has no score traces (a group carried
    from an earlier results file keeps its counts but not its scores)."""
    if not members:
        return None
    traces: list[Traces] = [dict(np.load(Path(str(m["_traces"])))) for m in members]
    names: list[str] = list(members[0]["detectors"])  # type: ignore[call-overload]
    baselines = [n for n in names if not n.startswith("EdgeGAN")]
    if any(name not in trace for trace in traces for name in (ours, *baselines)):
        return None
    return {name: compare(members, traces, ours, name) for name in baselines}
