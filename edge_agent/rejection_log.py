"""Refused readings, said in the log at INFO: once per device with the reason, then a periodic summary.

Why: a user whose readings are all refused (a stale timestamp, a wrong channel name) otherwise sees a
silent daemon; the rejected topic is rate-limited and per-message log lines would flood the journal.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

log = logging.getLogger("edge_agent.rejected")

NO_DEVICE = "-"  # a message whose topic named no device


OTHER_DEVICES = "(other devices)"


class RejectionLog:
    """The first refusal of each device is logged with its detail; the rest are counted and summarised."""

    def __init__(
        self, interval_s: float = 60.0, max_devices_told: int = 10_000, devices_named: int = 3
    ) -> None:
        """`max_devices_told` bounds the memory of who was already told about (a fleet of random ids)."""
        self.interval_s = interval_s
        self.max_devices_told = max_devices_told
        self.devices_named = devices_named
        self._told: set[str] = set()
        self._counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._next_summary: float | None = None

    def record(self, device: str | None, reason: str, detail: str, now: float) -> None:
        """Count one refused message; the first one of a device is logged at once, with why."""
        name = device or NO_DEVICE
        if name not in self._told and len(self._told) < self.max_devices_told:
            self._told.add(name)
            log.info(
                "device %s: reading refused (%s: %s); further refusals are summarised every %g s",
                name,
                reason,
                detail[:200],
                self.interval_s,
            )
        counts = self._counts[reason]
        if name not in counts and len(counts) >= self.max_devices_told:
            name = OTHER_DEVICES  # a flood of random ids is counted, not remembered id by id
        counts[name] += 1
        if self._next_summary is None:
            self._next_summary = now + self.interval_s

    def forget(self, device: str) -> None:
        """A device whose state was dropped is told again when it comes back."""
        self._told.discard(device)

    def summary(self) -> str:
        """`reason count (device n, ...)` per reason, most frequent first; empty when nothing was refused."""
        parts = []
        for reason, devices in sorted(self._counts.items(), key=lambda item: -sum(item[1].values())):
            top = ", ".join(f"{device} {n}" for device, n in devices.most_common(self.devices_named))
            more = len(devices) - self.devices_named
            suffix = f", {more} more devices" if more > 0 else ""
            parts.append(f"{reason} {sum(devices.values())} ({top}{suffix})")
        return "; ".join(parts)

    def tick(self, now: float) -> None:
        """Log and reset the summary once an interval has passed since the first uncounted refusal."""
        if self._next_summary is None or now < self._next_summary:
            return
        log.info("readings refused in the last %g s: %s", self.interval_s, self.summary())
        self._counts.clear()
        self._next_summary = None
