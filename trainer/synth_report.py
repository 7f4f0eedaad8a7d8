"""Evidence for synthetic data: how real it looks (quality) and how much of the training data it gives away
(privacy), measured against the real training and held-out windows.

Privacy, on normalised windows, with the training windows subsampled to the holdout's count so that
"closer to training" is not just "more training windows to be close to":
- closer-to-training share: synthetic windows whose nearest real window is a training one. About 0.5 means
  no memorisation; towards 1 the generator reproduces what it saw.
- near-copy rate: synthetic windows closer to a training window than 99% of training windows are to their
  own nearest neighbour.
- membership inference AUC: telling training from held-out windows by their distance to the nearest
  synthetic window. 0.5 means the synthetic data reveal nothing about membership.
Quality, in the manner of TimeGAN's evaluation: per-channel KS distance, correlation and spectrum
differences, the discriminative score |accuracy - 0.5| of a small classifier trained to tell real from
synthetic windows, and the predictive score (next-step MAE when trained on synthetic and tested on real,
next to trained on real).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from scipy import signal, stats

MAX_WINDOWS = 1500
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SynthReport:
    """The figures, JSON-ready through `as_dict`, and the normalised rows the plots are drawn from."""

    privacy: dict[str, float]
    quality: dict[str, object]
    real_rows: F32
    synthetic_rows: F32

    @property
    def closer_to_training(self) -> float:
        """The memorisation figure the refusal threshold applies to."""
        return self.privacy["closer_to_training_share"]

    def as_dict(self) -> dict[str, object]:
        """Both parts."""
        return {"privacy": self.privacy, "quality": self.quality}


def _windows(rows: F32, window: int, count: int, rng: np.random.Generator) -> F32:
    starts = np.arange(0, len(rows) - window + 1, max(1, window // 2))
    if len(starts) > count:
        starts = np.sort(rng.choice(starts, count, replace=False))
    return np.stack([rows[s : s + window] for s in starts]).astype(np.float32)


def _nearest(a: F32, b: F32, exclude_self: bool = False) -> npt.NDArray[np.float64]:
    """Euclidean distance from each row of a to its nearest row of b (flattened windows)."""
    a2, b2 = (a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64))
    squared = (a2**2).sum(1)[:, None] + (b2**2).sum(1)[None, :] - 2 * a2 @ b2.T
    if exclude_self:
        np.fill_diagonal(squared, np.inf)
    nearest: npt.NDArray[np.float64] = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
    return nearest


def _auc(positive: npt.NDArray[np.float64], negative: npt.NDArray[np.float64]) -> float:
    ranks = stats.rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def privacy_figures(synthetic: F32, train: F32, holdout: F32, rng: np.random.Generator) -> dict[str, float]:
    """Memorisation, near copies and membership inference (see the module docstring)."""
    count = min(len(train), len(holdout))
    train = train[rng.choice(len(train), count, replace=False)]
    holdout = holdout[rng.choice(len(holdout), count, replace=False)]
    to_train, to_holdout = _nearest(synthetic, train), _nearest(synthetic, holdout)
    copy_threshold = float(np.quantile(_nearest(train, train, exclude_self=True), 0.01))
    # Members (training windows) are "closer" to the synthetic data; smaller distance = more member-like.
    member_distance, outsider_distance = _nearest(train, synthetic), _nearest(holdout, synthetic)
    # Drift: how far the held-out tail lies from training, against how far later training windows lie from
    # earlier ones (the distance new data has without drift). Windows are in time order (`_windows`).
    early, late = train[: int(len(train) * 0.8)], train[int(len(train) * 0.8) :]
    baseline = float(np.median(_nearest(late, early))) if len(late) and len(early) else 0.0
    drift = float(np.median(_nearest(holdout, train))) / max(baseline, 1e-12)
    return {
        "windows_compared": count,
        "closer_to_training_share": float(np.mean(to_train < to_holdout)),
        "median_distance_to_training": float(np.median(to_train)),
        "median_distance_to_holdout": float(np.median(to_holdout)),
        "near_copy_rate": float(np.mean(to_train < copy_threshold)),
        "membership_inference_auc": _auc(-member_distance, -outsider_distance),
        "holdout_drift_ratio": drift,
    }


DRIFT_RATIO = 1.25  # held-out windows this much farther from training than later training windows: drift
NEAR_COPY_LIMIT = 0.01  # more near-copies than this is memorisation, whatever else the figures say


def memorisation_verdict(privacy: dict[str, float], threshold: float) -> tuple[bool, str]:
    """(memorised, one sentence that says why), telling memorisation apart from a drifted holdout.

    A high closer-to-training share has two causes: the generator reproduces its training windows, or the
    held-out tail moved away from training (then any faithful generator lies nearer to training). The drift
    ratio tells which; near-copies are memorisation in either case.
    """
    share, copies = privacy["closer_to_training_share"], privacy["near_copy_rate"]
    drift = privacy.get("holdout_drift_ratio", 1.0)
    if copies > NEAR_COPY_LIMIT:
        return True, f"memorisation: {copies:.1%} of synthetic windows are near-copies of training windows"
    if share <= threshold:
        return False, f"no sign of memorisation (closer-to-training {share:.2f}, near-copies {copies:.1%})"
    if drift > DRIFT_RATIO:
        return False, (
            f"drift, not memorisation: {share:.2f} of synthetic windows lie nearer to training than to "
            f"held-out data, but the held-out windows lie {drift:.1f}x farther from training than later "
            f"training windows from earlier ones, and near-copies are {copies:.1%}"
        )
    return True, (
        f"memorisation: {share:.2f} of synthetic windows lie nearer to training than to held-out data "
        f"(threshold {threshold}) while the held-out data did not drift (ratio {drift:.2f})"
    )


def _discriminative_score(real: F32, synthetic: F32, seed: int) -> float:
    """|accuracy - 0.5| of a small 1-D conv classifier on a held-out third, after brief training."""
    torch.manual_seed(seed)
    count = min(len(real), len(synthetic))
    x = torch.from_numpy(np.concatenate([real[:count], synthetic[:count]])).transpose(1, 2)
    y = torch.cat([torch.ones(count), torch.zeros(count)])
    order = torch.randperm(len(y))
    x, y = x[order], y[order]
    cut = int(len(y) * 2 / 3)
    channels = x.shape[1]
    model = torch.nn.Sequential(
        torch.nn.Conv1d(channels, 16, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.Conv1d(16, 16, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 1),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for _ in range(30):
        for start in range(0, cut, 64):
            optimiser.zero_grad()
            loss = loss_fn(model(x[start : min(start + 64, cut)]).squeeze(1), y[start : min(start + 64, cut)])
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        accuracy = float(((model(x[cut:]).squeeze(1) > 0).float() == y[cut:]).float().mean().item())
    return abs(accuracy - 0.5)


def _next_step_mae(fit_on: F32, test_on: F32) -> float:
    """Next-step MAE of a linear predictor (whole window in, all channels out) fitted on one set."""
    inputs, targets = fit_on[:, :-1].reshape(len(fit_on), -1), fit_on[:, -1]
    design = np.hstack([inputs, np.ones((len(inputs), 1))])
    weights, *_ = np.linalg.lstsq(design, targets, rcond=1e-6)
    test_design = np.hstack([test_on[:, :-1].reshape(len(test_on), -1), np.ones((len(test_on), 1))])
    return float(np.mean(np.abs(test_design @ weights - test_on[:, -1])))


def quality_figures(
    synthetic_rows: F32, holdout_rows: F32, synthetic: F32, train: F32, holdout: F32, seed: int
) -> dict[str, object]:
    """Distributions, correlations, spectra, discriminative and predictive scores."""
    channels = synthetic_rows.shape[1]
    ks = [float(stats.ks_2samp(synthetic_rows[:, c], holdout_rows[:, c]).statistic) for c in range(channels)]
    corr_real, corr_synth = np.corrcoef(holdout_rows.T), np.corrcoef(synthetic_rows.T)
    corr_gap = float(np.nanmean(np.abs(corr_real - corr_synth)))
    nperseg = min(256, len(holdout_rows), len(synthetic_rows))
    _, psd_real = signal.welch(holdout_rows, axis=0, nperseg=nperseg)
    _, psd_synth = signal.welch(synthetic_rows, axis=0, nperseg=nperseg)
    spectrum_gap = float(np.mean(np.abs(np.log10(psd_synth + 1e-12) - np.log10(psd_real + 1e-12))))
    return {
        "ks_per_channel": ks,
        "ks_mean": float(np.mean(ks)),
        "correlation_mean_abs_difference": corr_gap,
        "spectrum_mean_abs_log10_difference": spectrum_gap,
        "discriminative_score": _discriminative_score(holdout, synthetic, seed),
        "predictive_mae_train_synthetic_test_real": _next_step_mae(synthetic, holdout),
        "predictive_mae_train_real_test_real": _next_step_mae(train, holdout),
    }


def build_report(
    synthetic_rows: F32,
    train_rows: F32,
    holdout_rows: F32,
    window: int,
    mean: F32,
    scale: F32,
    seed: int = 0,
) -> SynthReport:
    """All figures, on windows normalised with the bundle's normalisation."""
    rng = np.random.default_rng(seed)

    def normalise(rows: F32) -> F32:
        return ((rows - mean) / scale).astype(np.float32)

    synth_n, train_n, hold_n = normalise(synthetic_rows), normalise(train_rows), normalise(holdout_rows)
    synthetic = _windows(synth_n, window, MAX_WINDOWS, rng)
    train = _windows(train_n, window, MAX_WINDOWS, rng)
    holdout = _windows(hold_n, window, MAX_WINDOWS, rng)
    return SynthReport(
        privacy=privacy_figures(synthetic, train, holdout, rng),
        quality=quality_figures(synth_n, hold_n, synthetic, train, holdout, seed),
        real_rows=hold_n,
        synthetic_rows=synth_n,
    )


def write_report(report: SynthReport, folder: Path, channels: list[str], threshold: float) -> Path:
    """report.json and report.md in `folder`."""
    from trainer.plots import plot_synthetic_comparison

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    plots = plot_synthetic_comparison(report.real_rows, report.synthetic_rows, channels, folder)
    p, q = report.privacy, report.quality
    ks = q["ks_per_channel"]
    assert isinstance(ks, list)
    lines = [
        "# Synthetic data report",
        "",
        "## Privacy",
        "",
        "| figure | value | ideal |",
        "| --- | --- | --- |",
        f"| closer-to-training share | {p['closer_to_training_share']:.3f} | 0.5 (limit {threshold}) |",
        f"| near-copy rate | {p['near_copy_rate']:.4f} | 0 |",
        f"| membership inference AUC | {p['membership_inference_auc']:.3f} | 0.5 |",
        f"| held-out drift ratio | {p['holdout_drift_ratio']:.2f} | 1 (above {DRIFT_RATIO}: drifted) |",
        "",
        memorisation_verdict(p, threshold)[1],
        "",
        "## Quality (synthetic against held-out real data)",
        "",
        "| figure | value | ideal |",
        "| --- | --- | --- |",
        f"| mean KS distance per channel | {q['ks_mean']:.3f} | 0 |",
        f"| correlation mean abs difference | {q['correlation_mean_abs_difference']:.3f} | 0 |",
        f"| spectrum mean abs log10 difference | {q['spectrum_mean_abs_log10_difference']:.3f} | 0 |",
        f"| discriminative score abs(acc - 0.5) | {q['discriminative_score']:.3f} | 0 |",
        f"| next-step MAE, trained on synthetic | {q['predictive_mae_train_synthetic_test_real']:.3f} | "
        f"as trained on real: {q['predictive_mae_train_real_test_real']:.3f} |",
        "",
        "KS per channel: " + ", ".join(f"{c} {v:.3f}" for c, v in zip(channels, ks, strict=True)),
        "",
        *(f"![{plot.stem}]({plot.name})" for plot in plots),
        "",
    ]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path
