"""Counters and latency percentiles for the stats topic. Pure."""

from __future__ import annotations

from collections import Counter, deque

import numpy as np


class Stats:
    """What the agent did since it started."""

    def __init__(self, latency_window: int = 4096) -> None:
        self.received = 0
        self.scored = 0
        self.alerts = 0
        self.other_shards = 0  # telemetry of devices another shard scores: acknowledged, not scored
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_reload_error: str | None = None
        self.rejected: Counter[str] = Counter()
        # Sparkplug sessions: messages missed (seq gaps), late wills ignored, rebirths asked for
        self.sparkplug: Counter[str] = Counter()
        self._latency_ms: deque[float] = deque(maxlen=latency_window)

    def observe_latency(self, seconds: float) -> None:
        """Receive-to-decision time of one scored reading."""
        self._latency_ms.append(seconds * 1e3)

    def snapshot(self, extra: dict[str, object] | None = None) -> dict[str, object]:
        """JSON-ready counters; latency percentiles over the most recent readings."""
        latency = np.asarray(self._latency_ms)
        percentiles = (
            {f"p{q}": round(float(np.percentile(latency, q)), 3) for q in (50, 95, 99)}
            if latency.size
            else {}
        )
        return {
            "received": self.received,
            "scored": self.scored,
            "alerts": self.alerts,
            "other_shards": self.other_shards,
            "reloads": {
                "ok": self.reloads_ok,
                "failed": self.reloads_failed,
                "last_error": self.last_reload_error,
            },
            "rejected": dict(self.rejected),
            **({"sparkplug": dict(self.sparkplug)} if self.sparkplug else {}),
            "latency_ms": percentiles,
            **(extra or {}),
        }
