"""Time-ordered split, normalisation on training rows only, constant channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.errors import DataError
from trainer.csv_data import Segment
from trainer.windows import build_windows, fit_normaliser, slide


def _segment(values: np.ndarray) -> Segment:
    return Segment(source=Path("x.csv"), values=values, first_line=2)


def test_split_follows_time_and_normaliser_sees_training_rows_only() -> None:
    values = np.arange(100, dtype=float)[:, None] * np.ones((1, 2))
    sets = build_windows([_segment(values)], window_len=8, stride=1, holdout_fraction=0.2)
    assert sets.rows_train == 80 and sets.rows_holdout == 20
    assert sets.train.max() == 79  # nothing from the holdout tail leaks into training windows
    assert sets.holdout.min() == 80
    np.testing.assert_allclose(sets.normaliser.mean, [39.5, 39.5])
    assert len(sets.holdout) == 20 - 8 + 1


def test_constant_channel_keeps_unit_scale() -> None:
    values = np.stack([np.linspace(0, 1, 50), np.full(50, 7.0)], axis=1)
    normaliser = fit_normaliser(values)
    assert normaliser.constant_channels == [1]
    assert normaliser.scale[1] == 1.0
    out = normaliser.apply(values)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 1], 0.0)


def test_slide_shapes_and_stride() -> None:
    values = np.arange(20, dtype=float).reshape(10, 2)
    windows = slide(values, 4, 3)
    assert windows.shape == (3, 4, 2)
    np.testing.assert_allclose(windows[1, :, 0], [6, 8, 10, 12])


def test_too_few_rows_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="too few rows for window_len=64"):
        build_windows([_segment(np.zeros((60, 3)))], window_len=64, stride=1, holdout_fraction=0.2)


def test_spread_floor_lifts_only_quiet_channels_to_a_share_of_the_median() -> None:
    rng = np.random.default_rng(0)
    spreads = np.array([1.0, 2.0, 4.0, 0.01])  # the last channel barely moves
    values = np.column_stack([rng.normal(0, s, 5000) for s in spreads] + [np.full(5000, 3.0)])
    plain = fit_normaliser(values)
    floored = fit_normaliser(values, spread_floor=0.5)
    median = float(np.median(plain.scale[:4]))  # the constant channel does not count
    np.testing.assert_allclose(floored.scale[:3], plain.scale[:3])  # loud channels untouched
    assert floored.scale[3] == pytest.approx(0.5 * median)  # the quiet one floored
    assert floored.scale[4] == 1.0 and floored.constant_channels == [4]
    # A shift of 0.2 on the quiet channel: ~20 spreads with a plain z-score, 0.2 / 0.75 with the floor.
    shifted = np.array([[0.0, 0.0, 0.0, 0.2, 3.0]])
    assert abs(plain.apply(shifted)[0, 3]) > 15
    assert abs(floored.apply(shifted)[0, 3]) == pytest.approx(0.2 / (0.5 * median), rel=1e-3)


def test_spread_floor_leaves_a_single_channel_unchanged() -> None:
    values = np.random.default_rng(1).normal(5.0, 0.003, (400, 1))
    np.testing.assert_allclose(fit_normaliser(values, 1.0).scale, fit_normaliser(values).scale)
