"""The export and quantize stages: the scorer graph (FP32), the generator graph in raw units, and the INT8
scorer quantized on training windows (with `quantize.generator_layers: auto`, a second INT8 graph whose
generator is quantised too, for the check stage to choose between)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_agent.bundle import GENERATOR, SCORER_FP32, SCORER_INT8
from trainer import scorer_graph
from trainer.config import TrainConfig
from trainer.export import export_generator, export_scorer
from trainer.fit import TrainedNets
from trainer.int8_choice import INT8_WITH_GENERATOR
from trainer.quantize import quantize_scorer
from trainer.windows import WindowSets


def export_graphs(
    scorer: nn.Module, generator_fit: TrainedNets, windows: WindowSets, config: TrainConfig, stage: Path
) -> None:
    """scorer FP32 and generator graphs into `stage` (the generator is the first member's)."""
    window_len, n_channels = config.model.window_len, windows.train.shape[2]
    export_scorer(scorer, window_len, n_channels, stage / SCORER_FP32)
    nets = generator_fit
    normaliser = windows.normaliser
    raw_generator = scorer_graph.RawGenerator(
        nets.generator, torch.from_numpy(normaliser.mean), torch.from_numpy(normaliser.scale)
    )
    export_generator(raw_generator, config.model.latent_dim, stage / GENERATOR)
    calibration = windows.train[
        np.random.default_rng(config.fit.seed).permutation(len(windows.train))[
            : config.quantize.calibration_windows
        ]
    ]
    layers = config.quantize.generator_layers
    quantize_scorer(stage / SCORER_FP32, stage / SCORER_INT8, calibration, with_generator=layers == "int8")
    if layers == "auto":  # the check stage keeps whichever INT8 graph detects as well, and deletes the other
        quantize_scorer(stage / SCORER_FP32, stage / INT8_WITH_GENERATOR, calibration, with_generator=True)
