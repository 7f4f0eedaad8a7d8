"""Synthetic normal data for a small pump-like asset: several physically linked channels at 1 Hz.

Used by the README's demo and by tests. The links (flow ~ speed, pressure ~ speed^2, current ~ hydraulic
power, temperature lags current) are what a broken-correlation anomaly breaks.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

PUMP_CHANNELS = [
    "speed_rpm",
    "flow_lpm",
    "pressure_bar",
    "current_a",
    "vibration_mm_s",
    "bearing_temp_c",
    "inlet_temp_c",
    "power_kw",
]
DEMO_START_EPOCH_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z


DUTY_LEVELS_RPM = (1200.0, 1450.0, 1700.0)


def make_pump_series(
    rows: int, seed: int = 0, period_s: float = 1.0, duty_levels: Sequence[float] = DUTY_LEVELS_RPM
) -> npt.NDArray[np.float64]:
    """Normal operation, [rows, 8] in raw units; seeded and reproducible.

    `duty_levels`: the speeds the set point moves between; one level gives a recording at one operating
    point (as one test-bench experiment runs), where only the slow inlet-temperature cycle moves the levels.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(rows) * period_s
    # The set point moves between a few duty levels with smooth ramps, as a pump on a controller does.
    levels = rng.choice(list(duty_levels), size=rows // 300 + 2)
    steps = np.repeat(levels, 300)[:rows]
    kernel = np.ones(40) / 40
    speed = np.convolve(np.pad(steps, (20, 19), mode="edge"), kernel, mode="valid")
    speed = speed + 8 * np.sin(2 * np.pi * t / 97.0) + rng.normal(0, 4, rows)
    rel = speed / 1450.0
    flow = 310 * rel + rng.normal(0, 3, rows)
    pressure = 4.2 * rel**2 + rng.normal(0, 0.05, rows)
    power = 0.0167 * flow * pressure / 0.72 * 10 + rng.normal(0, 0.15, rows)
    current = power * 1.9 + rng.normal(0, 0.2, rows)
    vibration = 1.1 + 0.5 * rel + 0.15 * np.sin(2 * np.pi * t * rel / 7.0) + np.abs(rng.normal(0, 0.06, rows))
    inlet = 14 + 3 * np.sin(2 * np.pi * t / 3600.0) + rng.normal(0, 0.05, rows)
    # First-order lag of the bearing towards a current-dependent equilibrium.
    target = inlet + 18 + 1.2 * current
    bearing = np.empty(rows)
    bearing[0] = target[0]
    for i in range(1, rows):
        bearing[i] = bearing[i - 1] + (target[i] - bearing[i - 1]) / 60.0
    bearing += rng.normal(0, 0.05, rows)
    return np.stack([speed, flow, pressure, current, vibration, bearing, inlet, power], axis=1)


def write_pump_csv(path: Path, rows: int, seed: int = 0, period_s: float = 1.0) -> Path:
    """Write demo data with an ISO timestamp column, as a field export would look."""
    values = make_pump_series(rows, seed, period_s)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", *PUMP_CHANNELS])
        for i, row in enumerate(values):
            stamp = np.datetime64(int(DEMO_START_EPOCH_S + i * period_s), "s")
            writer.writerow([f"{stamp}Z", *(f"{v:.5g}" for v in row)])
    return path
