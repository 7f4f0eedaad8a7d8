"""Window sets cut from a few hundred generated rows, for tests that run real (tiny) fits."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from trainer.windows import WindowSets, fit_normaliser, slide


def first_and_last_windows(
    rows: npt.NDArray[np.float64], window_len: int, train: int, holdout: int
) -> WindowSets:
    """The first `train` sliding windows of `rows` to fit on and the last `holdout` as the holdout, both
    normalised on every row: a fit's split without the loader's gaps and strides."""
    windows = slide(rows, window_len, 1)
    return WindowSets(
        train=windows[:train],
        holdout=windows[-holdout:],
        normaliser=fit_normaliser(rows),
        rows_train=train + window_len - 1,
        rows_holdout=holdout + window_len - 1,
    )
