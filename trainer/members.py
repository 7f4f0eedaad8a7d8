"""The fit stage: every member's networks on the same windows, and what each fit read at its checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.simulator.stream import GeneratorGraph
from trainer.config import TrainConfig
from trainer.distributed import World
from trainer.fit import TrainedNets, fit_networks
from trainer.level_process import DrawnWindows
from trainer.networks import count_parameters
from trainer.windows import Normaliser, WindowSets

log = logging.getLogger(__name__)


def member_seeds(config: TrainConfig) -> list[int]:
    """fit.seed, fit.seed + 1, ...: one per member, in the order the graph holds them."""
    return [config.fit.seed + index for index in range(config.model.members)]


def fit_members(windows: WindowSets, config: TrainConfig, world: World) -> list[TrainedNets]:
    """The networks of every member, fitted on the same windows.

    A member with seed s is the very fit a one-member bundle with fit.seed s would get.
    """
    train = to_network_layout(windows.train, windows.normaliser)
    holdout = to_network_layout(windows.holdout, windows.normaliser)
    seeds = member_seeds(config)
    members = []
    for index, seed in enumerate(seeds):
        if len(seeds) > 1:
            log.info("member %d of %d: seed %d", index + 1, len(seeds), seed)
        fit = config.fit.model_copy(update={"seed": seed})
        members.append(fit_networks(train, holdout, config.model, fit, world))
    return members


def to_network_layout(windows: npt.NDArray[np.float32], normaliser: Normaliser) -> npt.NDArray[np.float32]:
    """Raw [n, W, C] -> normalised [n, C, W]."""
    return np.ascontiguousarray(normaliser.apply(windows).transpose(0, 2, 1))


def graph_windows(generator_graph: Path, config: TrainConfig, windows: WindowSets) -> DrawnWindows:
    """The exported generator graph, as the simulator streams from it (normalised and bounded as the
    bundle's manifest will say: `windows`' normaliser and training range). The graph, not the torch network:
    it is what the simulator runs, and onnxruntime draws the simulator's small batches about ten times as
    fast (0.08 ms against 0.7 ms for 8 windows), which made the level process a quarter of a small fit."""
    return DrawnWindows(
        draw=GeneratorGraph(generator_graph).windows,
        latent_dim=config.model.latent_dim,
        window_len=config.model.window_len,
        mean=windows.normaliser.mean.astype(np.float32),
        scale=windows.normaliser.scale.astype(np.float32),
        strip_levels=not config.model.removes_window_level,
        row_range=windows.train_range(),
    )


def gan_summary(nets: TrainedNets) -> dict[str, object]:
    """How one fit went: the checkpoint the validation signal chose and what it read there."""
    return {
        "best_epoch": nets.best_epoch,
        "collapsed_epochs": nets.collapsed_epochs,
        "gan_restarts": nets.gan_restarts,
        "val_mmd": nets.history["val_mmd"][nets.best_epoch - 1],
        "val_diversity_ratio": nets.history["val_diversity_ratio"][nets.best_epoch - 1],
        "encoder_val_loss": min(nets.history["encoder_val_loss"]),
        "parameters": count_parameters(nets.generator, nets.critic, nets.encoder),
    }
