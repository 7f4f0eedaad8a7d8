"""What the status page shows, kept by the agent as it works: recent scores per device and recent alerts.

Why a board of its own: the page must read the agent's own state (no second source of truth), but the agent
loop and the HTTP thread run side by side, so the few things only the page needs (a short score history per
device, the last alerts) live here behind one lock, and are copied out whole for each page view.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

HISTORY = 60  # scores kept per device for its sparkline
RECENT_ALERTS = 20
MAX_DEVICES = 500  # devices kept on the page, the most recently scored first


@dataclass
class DeviceTrace:
    """One device's recent scores and its open alert, if any."""

    scores: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    threshold: float = 0.0
    last_ts: float = 0.0
    open_alert: dict[str, object] | None = None


class StatusBoard:
    """Thread-safe: `scored` and `alert` from the agent loop, `snapshot` from the page's thread."""

    def __init__(self, max_devices: int = MAX_DEVICES) -> None:
        self._lock = threading.Lock()
        self._devices: OrderedDict[str, DeviceTrace] = OrderedDict()
        self._alerts: deque[dict[str, object]] = deque(maxlen=RECENT_ALERTS)
        self.max_devices = max_devices

    def scored(self, device: str, ts: float, score: float, threshold: float) -> None:
        """One scored reading of `device`."""
        with self._lock:
            trace = self._devices.pop(device, None) or DeviceTrace()
            self._devices[device] = trace  # most recent last
            trace.scores.append(score)
            trace.threshold, trace.last_ts = threshold, ts
            while len(self._devices) > self.max_devices:
                self._devices.popitem(last=False)

    def alert(self, payload: dict[str, object]) -> None:
        """An alert start or end, as published."""
        device = str(payload.get("device"))
        with self._lock:
            self._alerts.appendleft(dict(payload))
            trace = self._devices.get(device)
            if trace is not None:
                trace.open_alert = dict(payload) if payload.get("type") == "start" else None

    def forget(self, device: str) -> None:
        """A device the agent dropped leaves the page too."""
        with self._lock:
            self._devices.pop(device, None)

    def snapshot(self) -> dict[str, object]:
        """Copies of everything, newest device first."""
        with self._lock:
            devices = {
                name: {
                    "scores": list(trace.scores),
                    "threshold": trace.threshold,
                    "last_ts": trace.last_ts,
                    "open_alert": trace.open_alert,
                }
                for name, trace in reversed(self._devices.items())
            }
            return {"devices": devices, "recent_alerts": list(self._alerts)}


HEALTH_KEYS = ("latency_ms", "inbox_depth", "inbox_overflow", "spool")


def page_view(
    agent_id: str,
    now: float,
    connected: bool,
    stats: dict[str, object],
    board: dict[str, object],
    online: frozenset[str] | None,
    thresholds: dict[str, float],
) -> dict[str, object]:
    """The status page's document: the agent's stats snapshot, the board's traces and alerts, and each
    device's availability (None where availability is off)."""
    traces: dict[str, dict[str, object]] = board["devices"]  # type: ignore[assignment]
    devices = [
        {"name": name, "online": None if online is None else name in online, **trace}
        for name, trace in traces.items()
    ]
    return {
        "agent_id": agent_id,
        "ts": now,
        "connected": connected,
        "bundle": {"id": stats["bundle_id"], "thresholds": thresholds},
        "counters": {key: stats[key] for key in ("received", "scored", "alerts", "devices")},
        "rejected": stats["rejected"],
        "devices": devices,
        "recent_alerts": board["recent_alerts"],
        "health": {key: stats[key] for key in HEALTH_KEYS if key in stats},
    }
