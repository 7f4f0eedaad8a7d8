"""build_bundle(): the fit's stages in order, each in its own module.

data (csv_data, data_stage) -> windows (windows) -> fit (auto_level, members: each level handling tried)
-> assemble (assemble, auto_level: scales, the automatic choice, one graph) -> export and quantize
(export_stage) -> calibrate and check (checks) -> write (manifest, bundle_writer). Nothing reaches the output
folder unless every check passes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from edge_agent.bundle import GENERATOR, Bundle
from trainer.assemble import level_left_out, score_definition
from trainer.auto_level import assemble_best, fit_levels
from trainer.bundle_writer import check_output_folder, publish, staging_folder
from trainer.checks import calibrate_and_check
from trainer.config import TrainConfig
from trainer.cross_fit import cross_fitted_scores
from trainer.csv_data import load_training_data
from trainer.data_stage import log_constant_channels, window_that_fits
from trainer.distributed import SINGLE, World, leave
from trainer.export_stage import export_graphs
from trainer.level_process import measure_level_process
from trainer.manifest import build_manifest
from trainer.members import graph_windows, member_seeds
from trainer.provenance import seed_everything
from trainer.windows import build_windows

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BuildResult:
    """The published bundle and the headline numbers for the command line."""

    bundle: Bundle
    fit_seconds: float


def build_bundle(data_path: Path, out: Path, config: TrainConfig) -> BuildResult:
    """The whole fit in this process; nothing is written to `out` unless every check passes."""
    result = build_bundle_in(SINGLE, data_path, out, config)
    assert result is not None  # a single process is rank 0
    return result


def build_bundle_in(world: World, data_path: Path, out: Path, config: TrainConfig) -> BuildResult | None:
    """The fit as one rank of a torchrun job (or alone): every rank trains, rank 0 exports and writes.

    Returns None on the other ranks, which stop once the networks are trained.
    """
    started = time.perf_counter()
    check_output_folder(out)
    seed_everything(config.fit.seed, max(1, config.fit.threads // world.local_size))
    # data
    data = load_training_data(data_path, config.data)
    log.info(
        "data: %d rows, %d channels, %d segments from %d file(s); %d cells interpolated, %d rows inserted",
        data.report.rows,
        len(data.channels),
        data.report.segments,
        len(data.report.files),
        data.report.interpolated_cells,
        data.report.inserted_rows,
    )
    config = window_that_fits(data, config)
    # windows
    windows = build_windows(
        data.segments,
        config.model.window_len,
        config.fit.train_stride,
        config.data.holdout_fraction,
        config.data.spread_floor,
    )
    log_constant_channels(data, windows.normaliser)
    # fit (each level handling the automatic choice tries)
    fits = fit_levels(windows, config, world, started)
    leave(world)
    if not world.is_main:
        return None
    # assemble: the winning level's graph with its chosen weights
    chosen = assemble_best(fits, windows)
    config, members, scorer, member_scorers, choice = (
        chosen.config,
        chosen.members,
        chosen.scorer,
        chosen.member_scorers,
        chosen.choice,
    )
    drifting = level_left_out(member_scorers, data.channels)
    if drifting:
        log.warning(
            "level term leaves out %s: the level moves one way through the training rows and the holdout's "
            "lies beyond them, so a level there is judged by the other terms and the agent's operating-range "
            "warning, not as an anomaly",
            ", ".join(drifting),
        )
    # cross-fit: out-of-sample scores for the training windows, where the holdout is short
    cross_fit = cross_fitted_scores(
        windows,
        config,
        choice,
        scorer,
        member_fit_s=fits.seconds_per_member(config.model.window_level),
    )
    with staging_folder(out) as stage:
        # export, quantize
        export_graphs(scorer, members[0], windows, config, stage)
        # calibrate, check
        validation, thresholds, refused = calibrate_and_check(
            scorer, members, windows, config, stage, cross_fit.scores
        )
        validation["cross_fit"] = cross_fit.as_dict()
        validation["training"] = {
            "world_size": world.size,
            "backend": world.backend or "none",
            "cpu_kernels": torch.backends.cpu.get_cpu_capability(),  # fits reproduce across equal kernels
        }
        if choice is not None:
            validation["auto"] = choice.as_dict()
        validation["release_gate"] = {
            "ratios": [member.release_ratio for member in member_scorers],  # None: ungated
            "rule": "score = min(full, ratio x recent terms); ratio = t_full / t_recent by the bundle's rule",
        }
        # write
        fit_seconds = time.perf_counter() - started
        definition = score_definition(member_scorers, member_seeds(config), data.channels)
        manifest = build_manifest(
            stage, data, windows, config, definition, thresholds, validation, fit_seconds
        )
        # Every bundle's simulator walks levels like the training data's and draws the generator's shapes:
        # a generator that draws levels too has them taken off its windows, here as in the simulator.
        level_process = None
        if config.fit.train_stride == 1:
            level_process = measure_level_process(
                windows.train,
                windows.normaliser,
                config.model.window_len,
                graph_windows(stage / GENERATOR, config, windows),
            )
        manifest = manifest.model_copy(update={"refused": refused, "level_process": level_process})
        bundle = publish(stage, manifest, out, config.bundle.sign_key)
    return BuildResult(bundle=bundle, fit_seconds=fit_seconds)
