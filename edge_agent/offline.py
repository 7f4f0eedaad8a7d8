"""`edge-agent score`: a CSV through the daemon's own pipeline, one output row per input row.

`score` is empty until the device's first full window and between hops repeats the latest one; `anomaly` is
the state the daemon would have published (1 while an alert is open); `top_channels` names, on anomalous
rows, the channels that contributed most to the row's window, as the daemon's alerts do. Rows that the
daemon would reject (a missing cell, a repeated or backwards timestamp) get an empty score and a `rejected`
reason.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.decision import ANOMALOUS
from edge_agent.errors import DataError
from edge_agent.pipeline import Outcome, ScoringPipeline
from edge_agent.reasons import Reason
from edge_agent.tabular import read_table
from edge_agent.telemetry import Reading

log = logging.getLogger(__name__)

OFFLINE_DEVICE = "offline"
_CHUNK = 1024


@dataclass(frozen=True, slots=True)
class OfflineSummary:
    """Counts for the command line."""

    rows: int
    scored_rows: int
    anomalous_rows: int
    alerts: int
    rejected: dict[str, int]


def score_csv(pipeline: ScoringPipeline, data: Path, out: Path) -> OfflineSummary:
    """Score `data` and write `out`; the output is written to a temporary name, then renamed.

    Without a timestamp column, rows are spaced by the bundle's training sample period.
    """
    table = read_table(data, pipeline.channels)
    if table.left_out:
        log.info("%s: numeric columns not in the bundle, not scored: %s", data, ", ".join(table.left_out))
    times = table.timestamps
    if times is None:
        times = np.arange(len(table.values), dtype=np.float64) * pipeline.sample_period_s
    scores: list[float | None] = [None] * len(table.values)
    states: list[int] = [0] * len(table.values)
    rejected: list[str] = [""] * len(table.values)
    tops: list[str] = [""] * len(table.values)
    latest_top = ""
    latest_score: float | None = None
    latest_state = 0
    alerts = 0
    for start in range(0, len(table.values), _CHUNK):
        rows = range(start, min(start + _CHUNK, len(table.values)))
        readings, index_of = [], {}
        for row in rows:
            values = table.values[row]
            if not np.isfinite(values).all():
                rejected[row] = Reason.NON_NUMERIC
                continue
            reading = Reading(OFFLINE_DEVICE, float(times[row]), values.astype(np.float32))
            index_of[id(reading)] = row
            readings.append(reading)
        outcomes, dropped = pipeline.push_many(readings)
        for item in dropped:
            rejected[index_of[id(item.reading)]] = item.reason
        scored = {index_of[id(o.reading)]: o for o in outcomes}
        for row in rows:
            if row in scored:
                latest_score = scored[row].score
                latest_state = int(scored[row].decision.state == ANOMALOUS)
                alerts += scored[row].decision.alert == "start"
                latest_top = _top(scored[row]) if latest_state else ""
            scores[row] = None if rejected[row] else latest_score
            states[row] = latest_state
            tops[row] = latest_top if latest_state else ""
    _write(out, table.line_numbers.tolist(), times.tolist(), scores, states, rejected, tops)
    return OfflineSummary(
        rows=len(table.values),
        scored_rows=sum(s is not None for s in scores),
        anomalous_rows=sum(states),
        alerts=alerts,
        rejected=dict(Counter(r for r in rejected if r)),
    )


def _top(outcome: Outcome) -> str:
    """`channel:contribution` pairs, largest first, separated by semicolons (one CSV cell)."""
    return ";".join(f"{name}:{value:.4g}" for name, value in outcome.top_channels())


def _write(
    out: Path,
    lines: list[int],
    times: list[float],
    scores: list[float | None],
    states: list[int],
    rejected: list[str],
    tops: list[str],
) -> None:
    temporary = out.with_name(f".{out.name}.partial")
    try:
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["line", "ts", "score", "anomaly", "rejected", "top_channels"])
            rows = zip(lines, times, scores, states, rejected, tops, strict=True)
            for line, ts, score, state, reason, top in rows:
                text = "" if score is None or not math.isfinite(score) else f"{score:.6g}"
                writer.writerow([line, f"{ts:.3f}", text, state, reason, top])
        temporary.replace(out)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise DataError(f"--out {out}: cannot write ({err.strerror})") from None
