"""The data stage: a window length the data can carry, and what the normalisation will not scale."""

from __future__ import annotations

import logging

import numpy as np

from edge_agent.errors import DataError
from trainer.config import TrainConfig
from trainer.csv_data import TrainingData
from trainer.windows import MIN_WINDOW_LEN, Normaliser, largest_fitting_window

log = logging.getLogger(__name__)


def window_that_fits(data: TrainingData, config: TrainConfig) -> TrainConfig:
    """The config, with a shorter default window where gaps leave too little data for the default one.

    A window length the user set is kept as given: then the error names the setting that would work.
    """
    configured = config.model.window_len
    fitting = largest_fitting_window(data.segments, configured, config.data.holdout_fraction)
    if fitting == configured:
        return config
    longest = max(len(segment.values) for segment in data.segments)
    explicit = "window_len" in config.model.model_fields_set
    if fitting is None:
        needed = int(np.ceil(MIN_WINDOW_LEN / config.data.holdout_fraction))
        raise DataError(
            f"too few rows for {f'window_len={configured}' if explicit else 'any window'}: the longest "
            f"gap-free stretch has {longest} rows, and even {MIN_WINDOW_LEN}-row windows need {needed} "
            "(more data, fewer gaps, or data.max_gap_rows to interpolate longer ones)"
        )
    if explicit:
        raise DataError(
            f"too few rows for window_len={configured}: stretches of at most {longest} rows leave no "
            f"training or holdout window; set model.window_len to {fitting} (the largest that fits) or less"
        )
    log.warning(
        "the longest gap-free stretch has %d rows: too few for %d-row windows with a %.0f%% holdout; "
        "fitting %d-row windows instead (set model.window_len to choose)",
        longest,
        configured,
        config.data.holdout_fraction * 100,
        fitting,
    )
    model = config.model.model_copy(update={"window_len": fitting})
    return config.model_copy(update={"model": model})


def log_constant_channels(data: TrainingData, normaliser: Normaliser) -> None:
    if normaliser.constant_channels:
        names = [data.channels[i] for i in normaliser.constant_channels]
        log.warning("constant in the training rows (kept, scale 1): %s", ", ".join(names))
