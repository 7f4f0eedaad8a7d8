"""PNG plots saved in the bundle: training curves and validation score histograms.

Uses matplotlib's object API with the Agg canvas, so no global backend is switched and no display is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_training_curves(history: dict[str, list[float]], best_epoch: int, path: Path) -> None:
    """Losses, validation MMD and diversity per epoch; the chosen checkpoint is marked."""
    figure = Figure(figsize=(11, 7), layout="constrained")
    FigureCanvasAgg(figure)
    panels = [
        ("GAN losses", ["gan_critic_loss", "gan_generator_loss", "wasserstein"]),
        ("validation: MMD generated vs real (lower is better)", ["val_mmd"]),
        ("validation: diversity ratio (collapse below 0.25)", ["val_diversity_ratio"]),
        ("encoder izi_f loss", ["encoder_loss", "encoder_val_loss"]),
    ]
    for axis, (title, keys) in zip(figure.subplots(2, 2).flat, panels, strict=False):
        for key in keys:
            if key in history:
                axis.plot(np.arange(1, len(history[key]) + 1), history[key], label=key)
        if not title.startswith("encoder") and best_epoch:
            axis.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label="chosen epoch")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epoch")
        axis.legend(fontsize=8)
    figure.savefig(path, dpi=90)


def plot_score_histograms(
    normal: npt.NDArray[np.floating],
    anomalous: dict[str, npt.NDArray[np.floating]],
    threshold: float,
    title: str,
    path: Path,
) -> None:
    """Held-out normal scores against injected anomalies, log-x, with the calibrated threshold."""
    figure = Figure(figsize=(9, 5), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    everything = np.concatenate([normal, *anomalous.values()])
    low = max(float(everything.min()), 1e-6)
    bins = list(np.logspace(np.log10(low), np.log10(float(everything.max()) * 1.01), 60))
    axis.hist(normal, bins=bins, alpha=0.7, label=f"held-out normal ({len(normal)})", density=True)
    for kind, scores in anomalous.items():
        axis.hist(scores, bins=bins, histtype="step", linewidth=1.4, label=kind, density=True)
    axis.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:.3g}")
    axis.set_xscale("log")
    axis.set_xlabel("anomaly score")
    axis.set_ylabel("density")
    axis.set_title(title)
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=90)
