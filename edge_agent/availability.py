"""Per-device availability: a device silent for `offline_after_s` turns offline, and online when heard again.

Pure bookkeeping; the service publishes the transitions (retained), so dashboards such as Home Assistant
show a dead sensor as unavailable instead of as its last, stale state.
"""

from __future__ import annotations

ONLINE = "online"
OFFLINE = "offline"


class DeviceAvailability:
    """When each device was last heard, and which of them are online."""

    def __init__(self, offline_after_s: float) -> None:
        self.offline_after_s = offline_after_s
        self._last_heard: dict[str, float] = {}
        self._online: set[str] = set()

    def heard(self, device: str, now: float) -> bool:
        """Record a message; True when the device was not online before (publish `online`)."""
        self._last_heard[device] = now
        if device in self._online:
            return False
        self._online.add(device)
        return True

    def online_now(self) -> frozenset[str]:
        """The devices online now (a copy, for the status page)."""
        return frozenset(self._online)

    def expired(self, now: float) -> list[str]:
        """Devices that just went silent for too long (publish `offline`); each is reported once."""
        gone = [d for d in self._online if now - self._last_heard[d] > self.offline_after_s]
        self._online.difference_update(gone)
        return sorted(gone)

    def went_offline(self, device: str) -> bool:
        """A device that said it is gone (a Sparkplug death); True when it was online (publish `offline`)."""
        if device not in self._online:
            return False
        self._online.discard(device)
        return True

    def forget(self, device: str) -> None:
        """Drop a device entirely (evicted: no availability is published for it again)."""
        self._last_heard.pop(device, None)
        self._online.discard(device)

    def states(self) -> dict[str, str]:
        """Every device heard so far and whether it is online now (for re-announcing after a reconnect)."""
        return {d: ONLINE if d in self._online else OFFLINE for d in self._last_heard}

    def online(self) -> int:
        """How many devices are online."""
        return len(self._online)
