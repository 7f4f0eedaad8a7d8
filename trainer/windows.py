"""Time-ordered train/holdout split, normalisation fitted on training rows only, sliding windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_agent.errors import DataError
from trainer.csv_data import Segment

_CONSTANT_STD = 1e-8  # below this a channel is constant: scale 1 so nothing divides by ~0


@dataclass(frozen=True, slots=True)
class Normaliser:
    """z-score per channel; constant channels keep scale 1 (their deviations stay in raw units)."""

    mean: npt.NDArray[np.float64]  # [channels]
    scale: npt.NDArray[np.float64]  # [channels]
    constant_channels: list[int]

    def apply(self, values: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Raw -> normalised, float32."""
        return ((values - self.mean) / self.scale).astype(np.float32)


@dataclass(frozen=True, slots=True)
class WindowSets:
    """Raw-unit windows [n, window, channels] of the training and holdout parts."""

    train: npt.NDArray[np.float32]
    holdout: npt.NDArray[np.float32]
    normaliser: Normaliser
    rows_train: int
    rows_holdout: int

    def train_range(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Per channel, the lowest and highest training reading, raw: the manifest's normalisation low and
        high, where the agent warns and the simulator's level walk turns back."""
        return self.train.min(axis=(0, 1)), self.train.max(axis=(0, 1))


def fit_normaliser(rows: npt.NDArray[np.float64], spread_floor: float = 0.0) -> Normaliser:
    """Mean and std per channel of the training rows, the std floored at `spread_floor` times the median
    std of the non-constant channels.

    Why the floor: a channel that barely moved in training (a std a tenth of its neighbours') would turn
    a small, harmless shift in deployment into a residual a hundred times theirs, and drown every other
    channel. A single channel with a share of at most 1 is left as it is.
    """
    mean = rows.mean(axis=0)
    std = rows.std(axis=0)
    is_constant = std < _CONSTANT_STD
    scale = np.where(is_constant, 1.0, floored_spread(std, spread_floor))
    return Normaliser(mean=mean, scale=scale, constant_channels=[int(i) for i in np.flatnonzero(is_constant)])


def floored_spread(std: npt.NDArray[np.float64], spread_floor: float) -> npt.NDArray[np.float64]:
    """Each std raised to at least `spread_floor` times the median std of the non-constant channels."""
    moving = std[std >= _CONSTANT_STD]
    floor = spread_floor * float(np.median(moving)) if moving.size else 0.0
    return np.maximum(std, floor)


def slide(values: npt.NDArray[np.floating], window_len: int, stride: int) -> npt.NDArray[np.float32]:
    """All windows of `window_len` rows every `stride` rows: [n, window, channels]."""
    if len(values) < window_len:
        return np.zeros((0, window_len, values.shape[1]), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(values, window_len, axis=0)  # [n, channels, window]
    return np.ascontiguousarray(view[::stride].transpose(0, 2, 1), dtype=np.float32)


MIN_WINDOW_LEN = 16  # the conv stack's smallest sensible window (two positions after three halvings)


def largest_fitting_window(segments: list[Segment], window_len: int, holdout_fraction: float) -> int | None:
    """The largest window length up to `window_len` (a multiple of 8, at least 16) that leaves at least one
    training and one holdout window; None when even the smallest does not."""
    for candidate in range(window_len - window_len % 8, MIN_WINDOW_LEN - 1, -8):
        train = holdout = 0
        for segment in segments:
            n_holdout = int(round(len(segment.values) * holdout_fraction))
            train += max(0, len(segment.values) - n_holdout - candidate + 1)
            holdout += max(0, n_holdout - candidate + 1)
        if train >= 1 and holdout >= 1:
            return candidate
    return None


def build_windows(
    segments: list[Segment], window_len: int, stride: int, holdout_fraction: float, spread_floor: float = 0.0
) -> WindowSets:
    """Split each segment in time (head trains, tail is held out), then window each part separately;
    `spread_floor` is the normaliser's (see `fit_normaliser`)."""
    train_parts, holdout_parts = [], []
    for segment in segments:
        n_holdout = int(round(len(segment.values) * holdout_fraction))
        cut = len(segment.values) - n_holdout
        train_parts.append(segment.values[:cut])
        holdout_parts.append(segment.values[cut:])
    rows_train = sum(len(part) for part in train_parts)
    rows_holdout = sum(len(part) for part in holdout_parts)
    train = [slide(part, window_len, stride) for part in train_parts]
    holdout = [slide(part, window_len, 1) for part in holdout_parts]
    n_train, n_holdout = sum(len(w) for w in train), sum(len(w) for w in holdout)
    if n_train < 1 or n_holdout < 1:
        needed = int(np.ceil(window_len / holdout_fraction))
        raise DataError(
            f"too few rows for window_len={window_len}: {rows_train} training and {rows_holdout} holdout "
            "rows "
            f"give {n_train} and {n_holdout} windows; need at least {needed} rows in one gap-free stretch"
        )
    return WindowSets(
        train=np.concatenate(train),
        holdout=np.concatenate(holdout),
        normaliser=fit_normaliser(np.concatenate(train_parts), spread_floor),
        rows_train=rows_train,
        rows_holdout=rows_holdout,
    )
