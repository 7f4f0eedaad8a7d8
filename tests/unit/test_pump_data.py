"""The generated pump: several duty points by default, one when asked (a single test-bench experiment)."""

from __future__ import annotations

import numpy as np

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
