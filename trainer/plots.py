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


def plot_synthetic_comparison(
    real: npt.NDArray[np.floating], synthetic: npt.NDArray[np.floating], channels: list[str], folder: Path
) -> list[Path]:
    """Three PNGs for the synthetic-data report: per-channel histograms, correlation matrices, spectra.

    `real` and `synthetic` are rows [n, channels] in the same (normalised) units.
    """
    from scipy import signal

    paths = []
    columns = min(4, len(channels))
    rows = int(np.ceil(len(channels) / columns))
    figure = Figure(figsize=(3.2 * columns, 2.4 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for index, axis in enumerate(np.atleast_1d(figure.subplots(rows, columns)).flat):
        if index >= len(channels):
            axis.set_visible(False)
            continue
        bins = np.histogram_bin_edges(np.concatenate([real[:, index], synthetic[:, index]]), bins=40)
        axis.hist(real[:, index], bins=bins, alpha=0.5, density=True, label="training (real)")
        axis.hist(synthetic[:, index], bins=bins, alpha=0.5, density=True, label="synthetic")
        axis.set_title(channels[index], fontsize=9)
    figure.axes[0].legend(fontsize=7)
    paths.append(folder / "distributions.png")
    figure.savefig(paths[-1], dpi=80)

    figure = Figure(figsize=(9, 4), layout="constrained")
    FigureCanvasAgg(figure)
    for axis, data, title in zip(
        figure.subplots(1, 2), (real, synthetic), ("training (real)", "synthetic"), strict=True
    ):
        image = axis.imshow(np.corrcoef(data.T), vmin=-1, vmax=1, cmap="coolwarm")
        axis.set_title(f"correlations: {title}", fontsize=10)
        axis.set_xticks(range(len(channels)), channels, rotation=90, fontsize=7)
        axis.set_yticks(range(len(channels)), channels, fontsize=7)
    figure.colorbar(image, ax=figure.axes, shrink=0.8)
    paths.append(folder / "correlations.png")
    figure.savefig(paths[-1], dpi=80)

    figure = Figure(figsize=(8, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    segment = min(256, len(real), len(synthetic))
    for data, label, style in ((real, "held-out real", "-"), (synthetic, "synthetic", "--")):
        frequency, power = signal.welch(data, axis=0, nperseg=segment)
        axis.semilogy(frequency, power.mean(axis=1), style, label=label)
    axis.set_xlabel("frequency (cycles per sample)")
    axis.set_ylabel("mean power spectral density")
    axis.legend()
    paths.append(folder / "spectra.png")
    figure.savefig(paths[-1], dpi=80)
    return paths
