"""Per-device sliding windows: push a reading, get a full window every `hop_len` readings. Pure numpy.

Order policy: readings must move forward in time (and in `seq` when the device sends one). A repeat of the
last timestamp or sequence number is a duplicate; an older one is out of order. Both are dropped and named,
so that a QoS 1 redelivery or a replayed buffer never enters a window twice or scrambles its order.
Gaps longer than `max_gap_s` restart the device's window: a window never spans an outage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_agent.telemetry import Reading

DUPLICATE = "duplicate"
OUT_OF_ORDER = "out_of_order"


class OrderError(Exception):
    """A reading the order policy drops; `reason` is DUPLICATE or OUT_OF_ORDER."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _DeviceBuffer:
    ring: npt.NDArray[np.float32]  # [window, channels]
    filled: int = 0
    since_last: int = 0
    last_ts: float = float("-inf")
    last_seq: int | None = None
    windows: int = field(default=0)


class WindowStore:
    """Windows of every device the agent has seen."""

    def __init__(
        self, window_len: int, hop_len: int, n_channels: int, max_gap_s: float | None = None
    ) -> None:
        self.window_len, self.hop_len, self.n_channels = window_len, hop_len, n_channels
        self.max_gap_s = max_gap_s
        self._devices: dict[str, _DeviceBuffer] = {}

    def __len__(self) -> int:
        return len(self._devices)

    def push(self, reading: Reading) -> npt.NDArray[np.float32] | None:
        """Add a reading; returns a copy of the device's window [window, channels] when one is due."""
        buffer = self._devices.get(reading.device)
        if buffer is None:
            buffer = _DeviceBuffer(ring=np.zeros((self.window_len, self.n_channels), dtype=np.float32))
            self._devices[reading.device] = buffer
        _check_order(buffer, reading)
        if self.max_gap_s is not None and reading.ts - buffer.last_ts > self.max_gap_s:
            buffer.filled = buffer.since_last = 0
        buffer.last_ts = reading.ts
        if reading.seq is not None:
            buffer.last_seq = reading.seq
        # Shift-by-one keeps the window in time order; at these sizes it costs less than index bookkeeping.
        buffer.ring[:-1] = buffer.ring[1:]
        buffer.ring[-1] = reading.values
        buffer.filled = min(buffer.filled + 1, self.window_len)
        buffer.since_last += 1
        if buffer.filled < self.window_len:
            return None
        if buffer.windows and buffer.since_last < self.hop_len:
            return None
        buffer.since_last = 0
        buffer.windows += 1
        window: npt.NDArray[np.float32] = buffer.ring.copy()
        return window

    def forget(self, device: str) -> None:
        """Drop a device's buffer (device removed or long silent)."""
        self._devices.pop(device, None)


def _check_order(buffer: _DeviceBuffer, reading: Reading) -> None:
    if reading.seq is not None and buffer.last_seq is not None:
        if reading.seq == buffer.last_seq:
            raise OrderError(DUPLICATE)
        if reading.seq < buffer.last_seq:
            raise OrderError(OUT_OF_ORDER)
    if reading.ts == buffer.last_ts:
        raise OrderError(DUPLICATE)
    if reading.ts < buffer.last_ts:
        raise OrderError(OUT_OF_ORDER)
