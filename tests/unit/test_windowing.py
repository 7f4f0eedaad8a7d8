"""Per-device windows: hop, order policy, gaps."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.reasons import Reason
from edge_agent.telemetry import Reading
from edge_agent.windowing import (
    OrderError,
    ReorderBuffer,
    WindowBatch,
    WindowStore,
)


def _reading(ts: float, value: float, device: str = "d1", seq: int | None = None) -> Reading:
    return Reading(device, ts, np.array([value, -value], dtype=np.float32), seq)


def test_first_window_when_full_then_every_hop() -> None:
    store = WindowStore(window_len=4, hop_len=2, n_channels=2)
    emitted = [store.push(_reading(i, i)) is not None for i in range(10)]
    assert emitted == [False, False, False, True, False, True, False, True, False, True]
    window = store.push(_reading(10, 10))
    assert window is None
    window = store.push(_reading(11, 11))
    assert window is not None
    np.testing.assert_allclose(window[:, 0], [8, 9, 10, 11])  # oldest first


def test_devices_are_independent() -> None:
    store = WindowStore(window_len=3, hop_len=1, n_channels=2)
    for i in range(3):
        store.push(_reading(i, i, "a"))
    assert store.push(_reading(3, 100, "b")) is None
    window = store.push(_reading(3, 3, "a"))
    assert window is not None and window[-1, 0] == 3
    assert len(store) == 2


def test_duplicates_and_late_readings_are_refused_without_touching_the_window() -> None:
    store = WindowStore(window_len=3, hop_len=1, n_channels=2)
    for i in range(3):
        store.push(_reading(i, i, seq=i))
    for reading, reason in [
        (_reading(2, 2, seq=2), Reason.DUPLICATE),
        (_reading(1.5, 9, seq=1), Reason.OUT_OF_ORDER),
        (_reading(1.0, 9), Reason.OUT_OF_ORDER),
        (_reading(2.0, 9), Reason.DUPLICATE),
    ]:
        with pytest.raises(OrderError) as caught:
            store.push(reading)
        assert caught.value.reason == reason
    window = store.push(_reading(3, 3, seq=3))
    assert window is not None
    np.testing.assert_allclose(window[:, 0], [1, 2, 3])


def test_a_long_gap_restarts_the_window() -> None:
    store = WindowStore(window_len=3, hop_len=1, n_channels=2, max_gap_s=5)
    for i in range(3):
        store.push(_reading(i, i))
    assert store.push(_reading(100, 100)) is None
    assert store.push(_reading(101, 101)) is None
    window = store.push(_reading(102, 102))
    assert window is not None
    np.testing.assert_allclose(window[:, 0], [100, 101, 102])


def test_batched_windows_equal_the_copied_ones_across_the_ring_wrap() -> None:
    copied = WindowStore(window_len=4, hop_len=1, n_channels=2)
    batched = WindowStore(window_len=4, hop_len=1, n_channels=2)
    batch = WindowBatch(window_len=4, n_channels=2, capacity=2)  # small: forces the batch to grow
    expected = []
    for i in range(11):
        for device in ("a", "b"):
            window = copied.push(_reading(i, i + (100 if device == "b" else 0), device))
            if window is not None:
                expected.append(window)
            batched.push_into(_reading(i, i + (100 if device == "b" else 0), device), batch)
    assert batch.count == len(expected) == 16
    np.testing.assert_array_equal(batch.windows, np.stack(expected))
    np.testing.assert_allclose(batch.windows[-1][:, 0], [107, 108, 109, 110])


def test_reorder_buffer_puts_late_readings_in_place() -> None:
    reorder = ReorderBuffer(depth=2)
    released = [r.ts for ts in (1, 3, 2, 4, 6, 5, 7, 8) for r in reorder.push(_reading(ts, ts))]
    assert released == [1, 2, 3, 4, 5, 6]  # 7 and 8 are held until two newer readings come
    assert reorder.held() == 2


def test_reorder_buffer_refuses_too_late_and_repeated_readings() -> None:
    reorder = ReorderBuffer(depth=1)
    for ts in (1, 2, 3):
        reorder.push(_reading(ts, ts, seq=ts))
    for reading, reason in [
        (_reading(2, 2, seq=2), Reason.DUPLICATE),  # the last one released, redelivered
        (_reading(3, 3, seq=3), Reason.DUPLICATE),  # still held
        (_reading(0.5, 0, seq=0), Reason.OUT_OF_ORDER),  # later than the depth allows
    ]:
        with pytest.raises(OrderError) as caught:
            reorder.push(reading)
        assert caught.value.reason == reason


def test_reorder_depth_zero_passes_through_and_lets_the_store_judge_order() -> None:
    reorder = ReorderBuffer(depth=0)
    assert [r.ts for r in reorder.push(_reading(5, 5))] == [5]
    assert [r.ts for r in reorder.push(_reading(4, 4))] == [4]


def test_a_filling_window_takes_late_readings_in_time_order() -> None:
    """After a restart a broker may redeliver in-flight readings behind newer ones: while the first window
    fills, nothing has been decided on them, so they take their place instead of being lost."""
    store = WindowStore(window_len=4, hop_len=1, n_channels=2)
    batch = WindowBatch(4, 2)
    for ts in (3, 4, 1):
        assert store.push_into(_reading(ts, ts), batch) is None
    with pytest.raises(OrderError) as caught:
        store.push_into(_reading(4, 9), batch)  # the same time twice
    assert caught.value.reason == Reason.DUPLICATE
    newest = store.push_into(_reading(2, 2), batch)  # late, and completes the window
    assert newest is not None and newest.ts == 4  # the decision is for the window's newest reading
    np.testing.assert_allclose(batch.windows[0][:, 0], [1, 2, 3, 4])
    # Once a window was decided, the order policy is strict again.
    with pytest.raises(OrderError) as caught:
        store.push_into(_reading(3.5, 9), batch)
    assert caught.value.reason == Reason.OUT_OF_ORDER
    assert store.push_into(_reading(5, 5), batch) is not None
    np.testing.assert_allclose(batch.windows[1][:, 0], [2, 3, 4, 5])
