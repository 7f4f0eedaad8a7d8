"""The generated pump: several duty points by default, one when asked (a single test-bench experiment), and
the faults small_data --pump --labelled puts into it."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.detection.small_data import detection_judge, pooled, with_pump_fault
from trainer.demo.pump_data import PUMP_CHANNELS, make_pump_series


def test_one_duty_level_holds_the_operating_point_while_the_inlet_cycle_still_moves() -> None:
    speed, inlet = PUMP_CHANNELS.index("speed_rpm"), PUMP_CHANNELS.index("inlet_temp_c")
    several = make_pump_series(3000, seed=4)
    one = make_pump_series(3000, seed=4, duty_levels=(1450.0,))
    assert np.ptp(several[:, speed]) > 300  # moves between duty points
    assert abs(float(np.mean(one[:, speed])) - 1450.0) < 5 and float(np.std(one[:, speed])) < 15
    # The slow inlet cycle (3,600 s) is the same in both: a level drift no duty point removes.
    assert np.allclose(one[:, inlet], several[:, inlet], atol=0.5)
    # In the first 1,150 rows (small_data --pump's recording) the cycle rises: later rows sit above the first
    # 400 by well over the first 400's own spread.
    rise = float(one[400:1150, inlet].mean() - one[:400, inlet].mean())
    assert rise > 2 * float(one[:400, inlet].std())


@pytest.mark.parametrize(
    ("fault", "moved"),
    [
        ("valve", {"flow_lpm", "pressure_bar", "current_a", "power_kw"}),
        ("cavitation", {"vibration_mm_s", "flow_lpm", "pressure_bar"}),
        ("bearing", {"bearing_temp_c", "vibration_mm_s"}),
    ],
)
def test_a_pump_fault_moves_only_its_channels_inside_its_rows(fault: str, moved: set[str]) -> None:
    """small_data --pump --labelled's faults: the labelled rows differ, every other row is the clean
    recording, and only the fault's own channels change."""
    clean = make_pump_series(1150, seed=11, duty_levels=(1450.0,))
    faulty = with_pump_fault(clean, fault, 650, 950)
    changed = np.abs(faulty - clean) > 1e-12
    assert not changed[:650].any() and not changed[950:].any()
    assert {PUMP_CHANNELS[c] for c in np.nonzero(changed.any(axis=0))[0]} == moved
    # At full size each fault moves one of its channels by more than that channel's spread in the fitted rows.
    size = np.abs(faulty[900:950] - clean[900:950]).mean(axis=0) / clean[:400].std(axis=0)
    assert size.max() > 1.2
    with pytest.raises(ValueError, match="unknown pump fault"):
        with_pump_fault(clean, "gearbox", 650, 950)


def test_the_labelled_pump_protocol_pools_counts_over_recordings() -> None:
    """Pooled F1 and FAR are those of the summed confusion counts, not a mean of the recordings' ratios."""
    labels = np.zeros(200, np.int8)
    labels[100:150] = 1
    first = np.where(labels == 1, 5.0, 0.0)  # catches the whole fault, no false alarm
    second = np.full(200, 5.0)  # flags every row
    judge = detection_judge(labels)
    recordings = {
        "a": {"detectors": {"d": judge(first, first, 1.0)}},
        "b": {"detectors": {"d": judge(second, second, 1.0)}},
    }
    point = pooled(recordings)["d"]["point_wise"]
    assert point["false_alarm_rate"] == 150 / 300  # 0 of 150 normal rows, then 150 of 150
    assert point["f1"] == 2 * 100 / (2 * 100 + 150 + 0)
