"""Per-device sliding windows: push a reading, get a full window every `hop_len` readings. Pure numpy.

Order policy: readings must move forward in time (and in `seq` when the device sends one). A repeat of the
last timestamp or sequence number is a duplicate; an older one is out of order. Both are dropped and named,
so that a QoS 1 redelivery or a replayed buffer never enters a window twice or scrambles its order. A small
reorder stage in front (`reorder_depth` readings per device, see `ReorderBuffer`) lets readings that arrive
slightly late still take their place. While a window fills (a device's first readings, or after a gap) no
decision has used its readings yet, so they are held in time order and a late one still takes its place:
after an agent restart a broker redelivers what was in flight only after newer readings (NATS: after its
ack_wait), and those readings would otherwise be lost as out of order.
Gaps longer than `max_gap_s` restart the device's window: a window never spans an outage.

Each device keeps its window twice over in a [2 * window, channels] buffer, so that the current window is
always one contiguous slice: no shifting per reading, and a due window goes into the batch as one memcpy.
That matters on the daemon's hot path: numpy releases the GIL for copies of 500 elements or more, and every
release hands the GIL to the MQTT thread for up to a switch interval.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_agent.reasons import Reason
from edge_agent.telemetry import Reading


class OrderError(Exception):
    """A reading the order policy drops; `reason` is Reason.DUPLICATE or Reason.OUT_OF_ORDER."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _DeviceBuffer:
    ring: npt.NDArray[np.float32]  # [2 * window, channels]: every row written at pos and pos + window
    ring_bytes: memoryview  # the same memory as bytes, for GIL-holding copies
    pos: int = 0  # where the next row goes; the window is ring[pos : pos + window]
    filled: int = 0
    since_last: int = 0
    last_ts: float = float("-inf")
    last_seq: int | None = None
    windows: int = field(default=0)
    # While the window fills (at start, after a gap), readings wait here in time order: no decision has
    # used them yet, so a late one (a broker's redelivery after an agent restart) can still take its place.
    filling: list[Reading] = field(default_factory=list)
    newest: Reading | None = None  # the newest reading of the window last emitted


class WindowBatch:
    """A reusable [capacity, window, channels] float32 array that due windows are copied into."""

    def __init__(self, window_len: int, n_channels: int, capacity: int = 64) -> None:
        self._shape = (window_len, n_channels)
        self._stride = window_len * n_channels * 4
        self.count = 0
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        self._array = np.zeros((capacity, *self._shape), dtype=np.float32)
        self._bytes = self._array.data.cast("B")

    def clear(self) -> None:
        """Start a new batch (the memory is reused)."""
        self.count = 0

    def add(self, window_bytes: memoryview) -> None:
        """Append one window given as its raw float32 bytes."""
        if self.count == len(self._array):
            kept = self._array
            self._allocate(2 * len(kept))
            self._array[: len(kept)] = kept
        start = self.count * self._stride
        self._bytes[start : start + self._stride] = window_bytes
        self.count += 1

    @property
    def windows(self) -> npt.NDArray[np.float32]:
        """The windows added since `clear`, [count, window, channels] (a view: valid until the next add)."""
        return self._array[: self.count]


class WindowStore:
    """Windows of every device the agent has seen."""

    def __init__(
        self, window_len: int, hop_len: int, n_channels: int, max_gap_s: float | None = None
    ) -> None:
        self.window_len, self.hop_len, self.n_channels = window_len, hop_len, n_channels
        self.max_gap_s = max_gap_s
        self._devices: dict[str, _DeviceBuffer] = {}
        self._row_bytes = n_channels * 4

    def __len__(self) -> int:
        return len(self._devices)

    def devices(self) -> list[str]:
        """Ids of the devices with a window here."""
        return list(self._devices)

    def push(self, reading: Reading) -> npt.NDArray[np.float32] | None:
        """Add a reading; returns a copy of the device's window [window, channels] when one is due."""
        buffer = self._advance(reading)
        if buffer is None:
            return None
        window: npt.NDArray[np.float32] = buffer.ring[buffer.pos : buffer.pos + self.window_len].copy()
        return window

    def push_into(self, reading: Reading, batch: WindowBatch) -> Reading | None:
        """Add a reading; when a window is due, append it to `batch` and return the window's newest reading
        (the one its decision is for: `reading` itself, except when a late reading completes a first
        window)."""
        buffer = self._advance(reading)
        if buffer is None:
            return None
        start = buffer.pos * self._row_bytes
        batch.add(buffer.ring_bytes[start : start + self.window_len * self._row_bytes])
        return buffer.newest

    def _advance(self, reading: Reading) -> _DeviceBuffer | None:
        """Write the reading into its device's buffer; the buffer when a window is due, else None."""
        buffer = self._devices.get(reading.device)
        if buffer is None:
            ring = np.zeros((2 * self.window_len, self.n_channels), dtype=np.float32)
            buffer = _DeviceBuffer(ring=ring, ring_bytes=ring.data.cast("B"))
            self._devices[reading.device] = buffer
        check_order(buffer.last_ts, buffer.last_seq, reading)
        if self.max_gap_s is not None and reading.ts - self._newest_ts(buffer) > self.max_gap_s:
            buffer.filled = buffer.since_last = 0
            buffer.filling.clear()
        if buffer.filled < self.window_len:
            return self._fill(buffer, reading)
        self._write(buffer, reading)
        buffer.since_last += 1
        if buffer.since_last < self.hop_len:
            return None
        buffer.since_last = 0
        buffer.windows += 1
        buffer.newest = reading
        return buffer

    def _fill(self, buffer: _DeviceBuffer, reading: Reading) -> _DeviceBuffer | None:
        """Hold `reading` in time order until a whole window is there; then write them all and emit it."""
        held = buffer.filling
        if any(r.ts == reading.ts or (r.seq is not None and r.seq == reading.seq) for r in held):
            raise OrderError(Reason.DUPLICATE)
        bisect.insort(held, reading, key=_time_of)
        if len(held) < self.window_len:
            return None
        for row in held:
            self._write(buffer, row)
        buffer.filled, buffer.since_last = self.window_len, 0
        buffer.windows += 1
        buffer.newest = held[-1]
        held.clear()
        return buffer

    def _write(self, buffer: _DeviceBuffer, reading: Reading) -> None:
        buffer.last_ts = reading.ts
        if reading.seq is not None:
            buffer.last_seq = reading.seq
        buffer.ring[buffer.pos] = reading.values
        buffer.ring[buffer.pos + self.window_len] = reading.values
        buffer.pos = (buffer.pos + 1) % self.window_len

    @staticmethod
    def _newest_ts(buffer: _DeviceBuffer) -> float:
        return buffer.filling[-1].ts if buffer.filling else buffer.last_ts

    def forget(self, device: str) -> None:
        """Drop a device's buffer (device removed or long silent)."""
        self._devices.pop(device, None)


def _time_of(reading: Reading) -> float:
    return reading.ts


def check_order(last_ts: float, last_seq: int | None, reading: Reading) -> None:
    """Raise OrderError unless `reading` comes after (last_ts, last_seq)."""
    if reading.seq is not None and last_seq is not None:
        if reading.seq == last_seq:
            raise OrderError(Reason.DUPLICATE)
        if reading.seq < last_seq:
            raise OrderError(Reason.OUT_OF_ORDER)
    if reading.ts == last_ts:
        raise OrderError(Reason.DUPLICATE)
    if reading.ts < last_ts:
        raise OrderError(Reason.OUT_OF_ORDER)


@dataclass(slots=True)
class _Held:
    heap: list[tuple[float, int, Reading]] = field(default_factory=list)
    last_ts: float = float("-inf")  # of the last reading released
    last_seq: int | None = None
    arrivals: int = 0  # tie-breaker, so the heap never compares Readings


class ReorderBuffer:
    """Holds the newest `depth` readings of each device and releases them in time order.

    A reading that arrives up to `depth` readings late still enters its window in order; one later than that
    is out of order, and a repeat of a held or released timestamp (or sequence number) is a duplicate. The
    price is latency: a reading is scored when `depth` newer ones of its device have arrived. Depth 0 passes
    readings straight through.
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self._devices: dict[str, _Held] = {}

    def forget(self, device: str) -> None:
        """Drop whatever is held for a device."""
        self._devices.pop(device, None)

    def push(self, reading: Reading) -> list[Reading]:
        """Readings released by this one, oldest first; raises OrderError for a reading that is dropped."""
        if self.depth == 0:
            return [reading]
        held = self._devices.setdefault(reading.device, _Held())
        check_order(held.last_ts, held.last_seq, reading)
        for _, _, other in held.heap:
            if other.ts == reading.ts or (reading.seq is not None and other.seq == reading.seq):
                raise OrderError(Reason.DUPLICATE)
        held.arrivals += 1
        heapq.heappush(held.heap, (reading.ts, held.arrivals, reading))
        released = []
        while len(held.heap) > self.depth:
            oldest = heapq.heappop(held.heap)[2]
            held.last_ts = oldest.ts
            if oldest.seq is not None:
                held.last_seq = oldest.seq
            released.append(oldest)
        return released

    def held(self) -> int:
        """Readings waiting, all devices together."""
        return sum(len(held.heap) for held in self._devices.values())
