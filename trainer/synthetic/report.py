"""Evidence for synthetic data: how real it looks (quality) and how much of the training data it gives away
(privacy), measured against the real training and held-out windows.

Privacy, on normalised windows, with the training windows subsampled to the holdout's count so that
"closer to training" is not just "more training windows to be close to":
- closer-to-training share: synthetic windows whose nearest real window is a training one, training windows
  taken from stretches as long as the holdout (so neither side covers more of the process). About 0.5
  means no memorisation; towards 1 the generator reproduces what it saw.
- near-copy rate: synthetic windows closer to a training window than 99% of training windows are to their
  nearest non-overlapping neighbour. New real windows fall below that line too, by chance, about 1% of the
  time (more when the data repeat themselves), so the held-out windows' own rate is the reference and the
  verdict judges the excess over it.
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

from trainer.config import TrainConfig

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


def _windows(
    rows: F32, window: int, count: int, rng: np.random.Generator, stride: int = 0
) -> tuple[F32, npt.NDArray[np.int64]]:
    """At most `count` windows [n, window, C] starting every `stride` rows (half a window by default), in
    time order, and their start rows."""
    starts = np.arange(0, len(rows) - window + 1, stride or max(1, window // 2))
    if len(starts) > count:
        starts = np.sort(rng.choice(starts, count, replace=False))
    return np.stack([rows[s : s + window] for s in starts]).astype(np.float32), starts


def _nearest(a: F32, b: F32, apart: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.float64]:
    """Euclidean distance from each row of a to its nearest row of b (flattened windows); with `apart`
    ([len(a), len(b)]), only pairs marked True count (a window is not its own or its overlapping
    neighbour's copy)."""
    a2, b2 = (a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64))
    squared = (a2**2).sum(1)[:, None] + (b2**2).sum(1)[None, :] - 2 * a2 @ b2.T
    if apart is not None:
        squared = np.where(apart, squared, np.inf)
    nearest: npt.NDArray[np.float64] = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
    return nearest


def _auc(positive: npt.NDArray[np.float64], negative: npt.NDArray[np.float64]) -> float:
    ranks = stats.rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = len(positive), len(negative)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def privacy_figures(
    synthetic: F32,
    train: F32,
    holdout: F32,
    rng: np.random.Generator,
    train_starts: npt.NDArray[np.int64] | None = None,
    holdout_span: int | None = None,
) -> dict[str, float]:
    """Memorisation, near copies and membership inference (see the module docstring). `holdout_span`: the
    rows the held-out windows start in, so the closer-to-training share compares like spans."""
    window = train.shape[1]
    starts = np.arange(len(train)) * window if train_starts is None else train_starts
    apart = np.abs(starts[:, None] - starts[None, :]) >= window  # neither itself nor an overlapping one
    copy_threshold = float(np.quantile(_nearest(train, train, apart), 0.01))
    synthetic_copies = float(np.mean(_nearest(synthetic, train) < copy_threshold))
    holdout_copies = float(np.mean(_nearest(holdout, train) < copy_threshold))
    closer = _closer_to_training_share(synthetic, train, holdout, rng, starts, holdout_span)
    count = min(len(train), len(holdout))
    train = train[np.sort(rng.choice(len(train), count, replace=False))]  # kept in time order (drift below)
    holdout = holdout[np.sort(rng.choice(len(holdout), count, replace=False))]
    to_train, to_holdout = _nearest(synthetic, train), _nearest(synthetic, holdout)
    # Members (training windows) are "closer" to the synthetic data; smaller distance = more member-like.
    member_distance, outsider_distance = _nearest(train, synthetic), _nearest(holdout, synthetic)
    # Drift: how far the held-out tail lies from training, against how far later training windows lie from
    # earlier ones (the distance new data has without drift). Windows are in time order (`_windows`).
    early, late = train[: int(len(train) * 0.8)], train[int(len(train) * 0.8) :]
    baseline = float(np.median(_nearest(late, early))) if len(late) and len(early) else 0.0
    drift = float(np.median(_nearest(holdout, train))) / max(baseline, 1e-12)
    return {
        "windows_compared": count,
        "closer_to_training_share": closer,
        "median_distance_to_training": float(np.median(to_train)),
        "median_distance_to_holdout": float(np.median(to_holdout)),
        "near_copy_rate": synthetic_copies,
        "holdout_near_copy_rate": holdout_copies,
        "excess_near_copy_rate": max(synthetic_copies - holdout_copies, 0.0),
        "membership_inference_auc": _auc(-member_distance, -outsider_distance),
        "holdout_drift_ratio": drift,
    }


def _closer_to_training_share(
    synthetic: F32,
    train: F32,
    holdout: F32,
    rng: np.random.Generator,
    train_starts: npt.NDArray[np.int64],
    holdout_span: int | None,
) -> float:
    """Share of synthetic windows nearer to training windows than to held-out ones, the training windows taken
    from stretches as long as the holdout (mean over the stretches), equal counts on both sides.

    Why stretches: the held-out windows come from one short tail, and the same count of training windows
    drawn from four times the span covers more of the process (more phases of a slow cycle, more duty
    points), so any faithful generator lies nearer to them: fresh rows of a slow-cycle process read 0.69
    that way and 0.48 from stretches (tests/unit/test_synth_report.py). The demo's perfect generator reads
    0.559 and 0.389: its inlet sine has the data's own phase, so its rows repeat the held-out tail's. Without
    a span (windows alone), the training windows are subsampled from the whole training span.
    """
    stretches: list[npt.NDArray[np.int64]] = []
    if holdout_span is not None and holdout_span > 0:
        for first in range(0, int(train_starts.max()) + 1, holdout_span):
            members = np.flatnonzero((train_starts >= first) & (train_starts < first + holdout_span))
            if len(members) >= max(2, len(holdout) // 2):  # a short last stretch says little
                stretches.append(members)
    if not stretches:
        stretches = [np.arange(len(train))]
    shares = []
    for members in stretches:
        count = min(len(members), len(holdout))
        near_train = _nearest(synthetic, train[np.sort(rng.choice(members, count, replace=False))])
        near_holdout = _nearest(synthetic, holdout[np.sort(rng.choice(len(holdout), count, replace=False))])
        shares.append(float(np.mean(near_train < near_holdout)))
    return float(np.mean(shares))


DRIFT_RATIO = 1.25  # held-out windows this much farther from training than later training windows: drift
NEAR_COPY_LIMIT = 0.01  # more near-copies than this is memorisation, whatever else the figures say


def memorisation_verdict(privacy: dict[str, float], threshold: float) -> tuple[bool, str]:
    """(memorised, one sentence that says why), telling memorisation apart from a drifted holdout.

    A high closer-to-training share has two causes: the generator reproduces its training windows, or the
    held-out tail moved away from training (then any faithful generator lies nearer to training). The drift
    ratio tells which; near-copies are memorisation in either case.
    """
    share = privacy["closer_to_training_share"]
    copies = privacy.get("excess_near_copy_rate", privacy["near_copy_rate"])
    drift = privacy.get("holdout_drift_ratio", 1.0)
    if copies > NEAR_COPY_LIMIT:
        return True, (
            f"memorisation: {copies:.1%} more synthetic windows than held-out real ones are near-copies of "
            "training windows"
        )
    if share <= threshold:
        return (
            False,
            f"no sign of memorisation (closer-to-training {share:.2f}, excess near-copies {copies:.1%})",
        )
    if drift > DRIFT_RATIO:
        return False, (
            f"drift, not memorisation: {share:.2f} of synthetic windows lie nearer to training than to "
            f"held-out data, but the held-out windows lie {drift:.1f}x farther from training than later "
            f"training windows from earlier ones, and excess near-copies are {copies:.1%}"
        )
    return True, (
        f"memorisation: {share:.2f} of synthetic windows lie nearer to training than to held-out data "
        f"(threshold {threshold}) while the held-out data did not drift (ratio {drift:.2f})"
    )


DISCRIMINATOR_FOLDS = 3  # every window is judged once, by a classifier that did not train on it
DISCRIMINATIVE_KEYS = (
    "discriminative_score",
    "discriminative_accuracy",
    "discriminative_windows",
    "discriminative_null_spread",
)


def _fold_windows(rows: F32, window: int, per_fold: int) -> tuple[F32, npt.NDArray[np.int64]]:
    """`per_fold` windows from each of DISCRIMINATOR_FOLDS contiguous stretches of `rows`, spread evenly
    over each stretch, none crossing into the next, and the fold of each."""
    cuts = np.linspace(0, len(rows), DISCRIMINATOR_FOLDS + 1).astype(int)
    windows: list[F32] = []
    folds: list[int] = []
    for fold in range(DISCRIMINATOR_FOLDS):
        starts = np.arange(cuts[fold], cuts[fold + 1] - window + 1)
        picked = starts[np.linspace(0, len(starts) - 1, per_fold).round().astype(int)]
        windows.extend(rows[s : s + window] for s in picked)
        folds.extend([fold] * per_fold)
    return np.stack(windows).astype(np.float32), np.asarray(folds, dtype=np.int64)


def _discriminative_score(
    real_rows: F32, synthetic_rows: F32, window: int, seed: int
) -> dict[str, float | None]:
    """|accuracy - 0.5| of a small 1-D conv classifier telling real from synthetic windows, cross-validated
    over DISCRIMINATOR_FOLDS folds that are contiguous stretches of each source's rows.

    Why stretches, not shuffled windows: windows a few rows apart are nearly the same window, so with shuffled
    folds the classifier recognised held-out windows from their neighbours it trained on. Two draws of one
    AR(1) process (4,800 rows x 8 channels, 64-row windows, six seeds) then scored 0.087 on average where
    they should score 0; with stretches, 0.041 (tests/unit/test_synth_report.py). Windows start every
    eighth of a window inside a stretch, so short series still give the classifier something to learn
    from. On a few hundred rows the figure stays noisy: `null_spread` is what the same classifier's
    accuracy spreads by on that many windows when both sources are alike, so a score within about twice it
    says nothing. Rows too few for one window per stretch (TEP's 100 held-out rows) give None rather than
    a figure drawn from two windows.
    """
    torch.manual_seed(seed)
    usable = min(len(real_rows), len(synthetic_rows)) // DISCRIMINATOR_FOLDS - window  # starts per stretch
    if usable < 1:
        return dict.fromkeys(DISCRIMINATIVE_KEYS)
    per_fold = min(-(-usable // max(1, window // 8)), MAX_WINDOWS // DISCRIMINATOR_FOLDS)
    real, real_folds = _fold_windows(real_rows, window, per_fold)
    synthetic, synthetic_folds = _fold_windows(synthetic_rows, window, per_fold)
    x = torch.from_numpy(np.concatenate([real, synthetic])).transpose(1, 2)
    y = torch.cat([torch.ones(len(real)), torch.zeros(len(synthetic))])
    fold = torch.from_numpy(np.concatenate([real_folds, synthetic_folds]))
    correct = 0.0
    for held in range(DISCRIMINATOR_FOLDS):
        model = _fit_classifier(x[fold != held], y[fold != held])
        with torch.no_grad():
            correct += float(
                ((model(x[fold == held]).squeeze(1) > 0).float() == y[fold == held]).sum().item()
            )
    accuracy = correct / len(y)
    # Windows inside one stretch overlap, so the spread is that of about one window's worth per stretch.
    independent = 2 * DISCRIMINATOR_FOLDS * (usable + window) / window
    return {
        "discriminative_score": abs(accuracy - 0.5),
        "discriminative_accuracy": accuracy,
        "discriminative_windows": float(len(y)),
        "discriminative_null_spread": 0.5 / float(np.sqrt(independent)),
    }


def _fit_classifier(x: torch.Tensor, y: torch.Tensor) -> torch.nn.Module:
    """A small conv net trained briefly to tell real (1) from synthetic (0) windows [n, C, W]."""
    order = torch.randperm(len(y))
    x, y = x[order], y[order]
    model = torch.nn.Sequential(
        torch.nn.Conv1d(x.shape[1], 16, 5, padding=2),
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
        for start in range(0, len(y), 64):
            optimiser.zero_grad()
            loss = loss_fn(model(x[start : start + 64]).squeeze(1), y[start : start + 64])
            loss.backward()
            optimiser.step()
    return model


def _next_step_mae(fit_on: F32, test_on: F32) -> float:
    """Next-step MAE of a linear predictor (whole window in, all channels out) fitted on one set."""
    inputs, targets = fit_on[:, :-1].reshape(len(fit_on), -1), fit_on[:, -1]
    design = np.hstack([inputs, np.ones((len(inputs), 1))])
    weights, *_ = np.linalg.lstsq(design, targets, rcond=1e-6)
    test_design = np.hstack([test_on[:, :-1].reshape(len(test_on), -1), np.ones((len(test_on), 1))])
    return float(np.mean(np.abs(test_design @ weights - test_on[:, -1])))


def _likeness(synthetic_rows: F32, real_rows: F32, window: int, seed: int) -> dict[str, object]:
    """How alike synthetic rows and windows are to one set of real ones: marginals, links, spectra."""
    channels = synthetic_rows.shape[1]
    ks = [float(stats.ks_2samp(synthetic_rows[:, c], real_rows[:, c]).statistic) for c in range(channels)]
    corr_real, corr_synth = np.corrcoef(real_rows.T), np.corrcoef(synthetic_rows.T)
    corr_gap = float(np.nanmean(np.abs(corr_real - corr_synth)))
    nperseg = min(256, len(real_rows), len(synthetic_rows))
    _, psd_real = signal.welch(real_rows, axis=0, nperseg=nperseg)
    _, psd_synth = signal.welch(synthetic_rows, axis=0, nperseg=nperseg)
    spectrum_gap = float(np.mean(np.abs(np.log10(psd_synth + 1e-12) - np.log10(psd_real + 1e-12))))
    return {
        "ks_per_channel": ks,
        "ks_mean": float(np.mean(ks)),
        "correlation_mean_abs_difference": corr_gap,
        "spectrum_mean_abs_log10_difference": spectrum_gap,
        **_discriminative_score(real_rows, synthetic_rows, window, seed),
    }


def quality_figures(
    synthetic_rows: F32,
    train_rows: F32,
    holdout_rows: F32,
    synthetic: F32,
    train: F32,
    holdout: F32,
    seed: int,
) -> dict[str, object]:
    """Likeness to the training data (what the generator was fitted on, as TimeGAN's evaluation compares),
    the same against the held-out tail under `against_holdout`, and the predictive score on the holdout.

    Why both: the holdout is one contiguous stretch at the end, so it shows one slice of the operating
    range (the demo's last 1,200 rows sit at half a spread below the training mean); a generator faithful
    to all of the training data differs from that slice, and its windows are few (a noisy classifier).
    Memorisation, the risk of comparing against training data, is the privacy figures' job.
    """
    return {
        "reference": "training",
        **_likeness(synthetic_rows, train_rows, train.shape[1], seed),
        "predictive_mae_train_synthetic_test_real": _next_step_mae(synthetic, holdout),
        "predictive_mae_train_real_test_real": _next_step_mae(train, holdout),
        "against_holdout": _likeness(synthetic_rows, holdout_rows, holdout.shape[1], seed),
    }


def real_segments(data_path: Path, channels: list[str], config: TrainConfig) -> list[F32]:
    """The real data's gap-free segments [n, channels], in `channels`' order, read as a fit reads them."""
    from trainer.csv_data import load_training_data

    data = load_training_data(data_path, config.data.model_copy(update={"columns": channels}))
    return [segment.values.astype(np.float32) for segment in data.segments]


def split_like_the_fit(data_path: Path, channels: list[str], config: TrainConfig) -> tuple[F32, F32]:
    """(training rows, held-out rows) of the real data, split as the fit split them: each segment's tail."""
    train, holdout = [], []
    for values in real_segments(data_path, channels, config):
        cut = len(values) - int(round(len(values) * config.data.holdout_fraction))
        train.append(values[:cut])
        holdout.append(values[cut:])
    return np.concatenate(train).astype(np.float32), np.concatenate(holdout).astype(np.float32)


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
    synthetic, _ = _windows(synth_n, window, MAX_WINDOWS, rng)
    train, _ = _windows(train_n, window, MAX_WINDOWS, rng)
    holdout, _ = _windows(hold_n, window, MAX_WINDOWS, rng)
    # Privacy looks at windows every eighth of a window: at half-window steps a short holdout gives a few
    # dozen windows, and a near-copy threshold read off so few is their closest pair, which a faithful
    # generator undercuts by chance (about 1 in the sample size of its windows).
    dense = max(1, window // 8)
    synthetic_dense, _ = _windows(synth_n, window, MAX_WINDOWS, rng, dense)
    train_dense, train_starts = _windows(train_n, window, MAX_WINDOWS, rng, dense)
    holdout_dense, _ = _windows(hold_n, window, MAX_WINDOWS, rng, dense)
    return SynthReport(
        privacy=privacy_figures(
            synthetic_dense, train_dense, holdout_dense, rng, train_starts, max(1, len(hold_n) - window + 1)
        ),
        quality=quality_figures(synth_n, train_n, hold_n, synthetic, train, holdout, seed),
        real_rows=train_n,
        synthetic_rows=synth_n,
    )


def write_report(report: SynthReport, folder: Path, channels: list[str], threshold: float) -> Path:
    """report.json and report.md in `folder`."""
    from trainer.plots import plot_synthetic_comparison

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    plots = plot_synthetic_comparison(report.real_rows, report.synthetic_rows, channels, folder)
    p, q = report.privacy, report.quality
    h = q["against_holdout"]
    assert isinstance(h, dict)
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
        f"| near-copy rate | {p['near_copy_rate']:.4f} | as held-out real windows: "
        f"{p['holdout_near_copy_rate']:.4f} |",
        f"| membership inference AUC | {p['membership_inference_auc']:.3f} | 0.5 |",
        f"| held-out drift ratio | {p['holdout_drift_ratio']:.2f} | 1 (above {DRIFT_RATIO}: drifted) |",
        "",
        memorisation_verdict(p, threshold)[1],
        "",
        "## Quality (synthetic against the training data, and against the held-out tail)",
        "",
        "| figure | against training | against held-out | ideal |",
        "| --- | --- | --- | --- |",
        *(
            f"| {label} | {_cell(q[key])} | {_cell(h[key])} | 0 |"
            for label, key in (
                ("mean KS distance per channel", "ks_mean"),
                ("correlation mean abs difference", "correlation_mean_abs_difference"),
                ("spectrum mean abs log10 difference", "spectrum_mean_abs_log10_difference"),
                ("discriminative score abs(acc - 0.5)", "discriminative_score"),
            )
        ),
        f"| next-step MAE on held-out rows, trained on synthetic | | "
        f"{q['predictive_mae_train_synthetic_test_real']:.3f} | "
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


def _cell(value: object) -> str:
    """A figure to three places, or why there is none (too few rows to judge)."""
    return "too few rows" if value is None else f"{value:.3f}"
