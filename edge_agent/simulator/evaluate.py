"""Score a simulated run: recall per fault kind, false alarms per device-hour, detection delay. Pure.

An alert start on a device detects a value anomaly when its timestamp falls between the anomaly's start and
its end plus one window (windows still hold the anomaly that long). A further alert start inside the same span
(a fault that ends with a step back, or whose alert closed and reopened) is a repeat, counted apart: it points
at a real fault. Alert starts outside every value anomaly are false alarms. Transport faults should be
rejected by ingest, not alerted on: an alert inside one counts as a false alarm too, and the table shows how
many alerts each transport fault kind drew.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_agent.simulator.faults import ALL_KINDS, TRANSPORT_KINDS


@dataclass(frozen=True)
class KindResult:
    """One row of the table."""

    kind: str
    injected: int
    detected: int
    median_delay_s: float | None

    @property
    def recall(self) -> float | None:
        """Detected share; None when nothing of the kind was injected."""
        return self.detected / self.injected if self.injected else None


@dataclass(frozen=True)
class Evaluation:
    """The whole result."""

    kinds: list[KindResult]
    alerts: int
    false_alarms: int
    device_hours: float
    repeats: int = 0  # further alert starts inside an already detected value anomaly
    clean_device_hours: float = 0.0  # hours of devices that had no fault of any kind
    clean_alerts: int = 0  # alert starts on those devices: every one is a false alarm

    @property
    def clean_alerts_per_device_hour(self) -> float | None:
        """What a fleet of healthy devices draws; None when every device had a fault."""
        return self.clean_alerts / self.clean_device_hours if self.clean_device_hours > 0 else None

    @property
    def false_alarms_per_device_hour(self) -> float:
        """False alarms normalised by how long the fleet ran."""
        return self.false_alarms / self.device_hours if self.device_hours > 0 else 0.0

    def recall_of(self, kind: str) -> float | None:
        """Recall of one kind."""
        return next((row.recall for row in self.kinds if row.kind == kind), None)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "kinds": {
                row.kind: {
                    "injected": row.injected,
                    "detected": row.detected,
                    "recall": row.recall,
                    "median_delay_s": row.median_delay_s,
                }
                for row in self.kinds
            },
            "alerts": self.alerts,
            "false_alarms": self.false_alarms,
            "repeats": self.repeats,
            "device_hours": round(self.device_hours, 4),
            "false_alarms_per_device_hour": round(self.false_alarms_per_device_hour, 3),
            "clean_device_hours": round(self.clean_device_hours, 4),
            "clean_alerts": self.clean_alerts,
        }

    def table(self) -> str:
        """A plain-text table for terminals and logs."""
        lines = [
            f"{'kind':<20}{'injected':>9}{'detected':>9}{'recall':>8}{'delay s':>9}",
        ]
        for row in self.kinds:
            if not row.injected:
                continue
            transport = row.kind in TRANSPORT_KINDS
            recall = "-" if transport or row.recall is None else f"{row.recall:.2f}"
            delay = "-" if row.median_delay_s is None else f"{row.median_delay_s:.1f}"
            detected = f"{row.detected}*" if transport else str(row.detected)
            lines.append(f"{row.kind:<20}{row.injected:>9}{detected:>9}{recall:>8}{delay:>9}")
        lines.append(
            f"alerts {self.alerts} ({self.repeats} repeats inside a fault), false alarms {self.false_alarms} "
            f"({self.false_alarms_per_device_hour:.2f} per device-hour, "
            f"{self.device_hours:.2f} device-hours)"
        )
        if self.clean_device_hours > 0:
            lines.append(
                f"clean devices: {self.clean_alerts} alerts over {self.clean_device_hours:.2f} device-hours"
            )
        if any(row.injected for row in self.kinds if row.kind in TRANSPORT_KINDS):
            lines.append(
                "* transport faults should draw no alert: their 'detected' column counts alerts drawn"
            )
        return "\n".join(lines)


def evaluate(
    truth: list[dict[str, object]],
    alerts: list[dict[str, object]],
    device_hours: float,
    grace_s: float,
    devices: Sequence[str] = (),
) -> Evaluation:
    """Match alert starts to injected faults; with `devices` (every device of the run, each running
    device_hours / len(devices)), also count the alerts of the devices that had no fault at all."""
    starts = sorted(
        (a for a in alerts if a.get("type") == "start"),
        key=lambda a: float(a["ts"]),  # type: ignore[arg-type]
    )
    used: set[int] = set()
    rows = []
    for kind in ALL_KINDS:
        events = [t for t in truth if t["kind"] == kind]
        detected, delays = 0, []
        for event in events:
            low, high = float(event["start"]), float(event["end"]) + grace_s  # type: ignore[arg-type]
            for position, alert in enumerate(starts):
                ts = float(alert["ts"])  # type: ignore[arg-type]
                if position in used or alert["device"] != event["device"] or not low <= ts <= high:
                    continue
                used.add(position)
                detected += 1
                delays.append(ts - low)
                break
        delay = float(np.median(delays)) if delays and kind not in TRANSPORT_KINDS else None
        rows.append(KindResult(kind, len(events), detected, delay))
    spans = [
        (t["device"], float(t["start"]), float(t["end"]) + grace_s)  # type: ignore[arg-type]
        for t in truth
        if t["kind"] not in TRANSPORT_KINDS
    ]
    repeats = len(
        [
            alert
            for position, alert in enumerate(starts)
            if position not in used
            and any(
                device == alert["device"] and low <= float(alert["ts"]) <= high  # type: ignore[arg-type]
                for device, low, high in spans
            )
        ]
    )
    transport_hits = sum(row.detected for row in rows if row.kind in TRANSPORT_KINDS)
    false_alarms = len(starts) - len(used) - repeats + transport_hits
    faulty = {t["device"] for t in truth}
    clean = [d for d in devices if d not in faulty]
    clean_hours = device_hours * len(clean) / len(devices) if devices else 0.0
    clean_set = set(clean)
    clean_alerts = len([alert for alert in starts if alert["device"] in clean_set])
    return Evaluation(rows, len(starts), false_alarms, device_hours, repeats, clean_hours, clean_alerts)
