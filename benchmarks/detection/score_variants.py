"""Which way of turning EdgeGAN's residuals into one score detects best? One fit per series, many scores.

Usage: python -m benchmarks.detection.score_variants [--series machine-2-1,nyc_taxi,...] [--quick]
    [--seed N] [--keep DIR] [--out NAME] [--center]
Fits the networks once per series (default network settings, on a plain z-score), then scores a sample of
the training windows, the holdout and the test windows with each variant in torch; a variant's spread
floor is applied to the residuals after the fit. Thresholds follow the fit's own rule (POT on the holdout
and on the training sample, the stricter of the two); point-wise F1 and AUC-PR on the test labels.
Writes benchmarks/results/NAME.json (default score_variants). This is how the scoring defaults were chosen.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.detection import metrics
from benchmarks.detection.datasets import DEFAULT_ROOT, load_all
from benchmarks.detection.run import Prepared, benchmark_config, calibrated_threshold, prepare
from benchmarks.environment import write_result
from trainer.fit import fit_networks
from trainer.networks import without_level
from trainer.provenance import seed_everything
from trainer.scorer_graph import LatentDistance, ScoreTerms
from trainer.windows import floored_spread


@dataclass(frozen=True)
class Variant:
    """feature weight; share of channels pooled (largest first); share of the window (newest rows);
    weight of the encoder-latent Mahalanobis term (the GAN's counterpart of PCA's T-squared);
    floor on each channel's normalising spread, as a share of the median channel's spread (0: none),
    applied to the residuals after the fit: a channel that barely moved in training cannot turn a small
    shift into a residual tens of times larger than its neighbours'; floor on each channel's residual
    scale, as a share of the mean channel's (`score.residual_floor`)."""

    feature_weight: float
    channel_share: float = 1.0
    recent_share: float = 1.0
    latent_weight: float = 0.0
    spread_floor: float = 0.0
    residual_floor: float = 0.05

    @property
    def name(self) -> str:
        latent = f" latent={self.latent_weight}" if self.latent_weight else ""
        floor = f" floor={self.spread_floor}" if self.spread_floor else ""
        if self.residual_floor != Variant.residual_floor:
            floor += f" rfloor={self.residual_floor}"
        return f"w={self.feature_weight} ch={self.channel_share} recent={self.recent_share}{latent}{floor}"


VARIANTS = [
    Variant(0.5),
    Variant(0.1),
    Variant(0.0),
    Variant(1.0),
    Variant(0.1, channel_share=0.01),
    Variant(0.1, latent_weight=0.25),
    Variant(0.1, latent_weight=0.5),
    Variant(0.1, latent_weight=1.0),
    Variant(0.5, channel_share=0.25),
    Variant(0.5, recent_share=0.25),
    Variant(0.1, spread_floor=0.5),
    Variant(0.1, spread_floor=1.0),
    Variant(0.1, latent_weight=0.5, spread_floor=1.0),
    Variant(0.1, spread_floor=1.0, residual_floor=1.0),
    Variant(0.1, latent_weight=0.25, spread_floor=1.0),
    Variant(0.0, spread_floor=1.0),
]


def spread_gain(spread: np.ndarray, floor_share: float) -> np.ndarray:
    """Per channel, how a squared residual changes when the normalising spread is floored at
    `floor_share` times the median spread of the non-constant channels (`data.spread_floor`, applied after
    the fit). Constant channels (spread 0) get gain 0 here: their residual leaves the floored variants."""
    if floor_share <= 0:
        return np.ones_like(spread)
    return (spread / floored_spread(spread, floor_share)) ** 2


def _residuals(terms: ScoreTerms, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window: squared reconstruction residual per channel and row [n, C, W], feature residual [n],
    encoder latent [n, latent]."""
    recs, feats, latents = [], [], []
    with torch.no_grad():
        for start in range(0, len(windows), 1024):
            x = torch.from_numpy(windows[start : start + 1024])
            if terms.remove_level:  # as ScoreTerms.forward does; the fit saw the same windows
                x = without_level(x)
            latent = terms.encoder(x)
            reconstruction = terms.generator(latent)
            features = terms.critic.features(torch.cat([x, reconstruction]))
            real, fake = features[: len(x)], features[len(x) :]
            recs.append((x - reconstruction).pow(2).numpy())
            feats.append((real - fake).pow(2).mean(dim=(1, 2)).numpy())
            latents.append(latent.numpy())
    return np.concatenate(recs), np.concatenate(feats), np.concatenate(latents)


def _latent_terms(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """The scorer graph's latent distance (fitted on `train`), in units of its training median."""
    distance = LatentDistance.fit(torch.from_numpy(train))
    with torch.no_grad():
        on_train, *values = (distance(torch.from_numpy(z)).double().numpy() for z in (train, *others))
    median = max(float(np.median(on_train)), 1e-9)
    return [v / median for v in values]


def _score(
    rec: np.ndarray, feat: np.ndarray, latent: np.ndarray, scale: tuple[np.ndarray, float], variant: Variant
) -> np.ndarray:
    window = rec.shape[2]
    recent = max(1, int(round(window * variant.recent_share)))
    per_channel = rec[:, :, -recent:].mean(axis=2) / scale[0]
    channels = per_channel.shape[1]
    pooled = max(1, int(np.ceil(channels * variant.channel_share)))
    top = np.sort(per_channel, axis=1)[:, -pooled:].mean(axis=1)
    base = (1 - variant.feature_weight) * top + variant.feature_weight * feat / scale[1]
    return (1 - variant.latent_weight) * base + variant.latent_weight * latent


Part = tuple[np.ndarray, np.ndarray, np.ndarray]  # rec [n, C, W], feature residual [n], latent term [n]


def _variant_scores(
    variant: Variant, spread: np.ndarray, train: Part, hold: Part, test: Part
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One variant's scores on the training sample, the holdout and the test part, with its term scales
    measured on the training sample (the training scores take part in the threshold, as in the fit)."""
    gain = spread_gain(spread, variant.spread_floor)[None, :, None]
    recent = max(1, int(round(train[0].shape[2] * variant.recent_share)))
    channel_scale = np.median((train[0] * gain)[:, :, -recent:].mean(axis=2), axis=0)
    channel_scale = np.maximum(channel_scale, max(channel_scale.mean() * variant.residual_floor, 1e-6))
    scale = (channel_scale, max(float(np.median(train[1])), 1e-6))
    on_train = _score(train[0] * gain, train[1], train[2], scale, variant)
    held = _score(hold[0] * gain, hold[1], hold[2], scale, variant)
    return on_train, held, _score(test[0] * gain, test[1], test[2], scale, variant)


def evaluate(
    name_filter: list[str],
    quick: bool,
    root: Path,
    keep: Path | None = None,
    seed: int | None = None,
    spread_floor: float = 0.0,
    center: bool = False,
) -> dict[str, object]:
    """`spread_floor`: the fit's own normaliser floor (`data.spread_floor`); variants floor on top.
    `center`: the fit and the scores use `model.window_level: remove` (each window without its per-channel
    mean), the product's own mechanism."""
    config = benchmark_config(quick, {"model.window_level": "remove"} if center else None)
    if seed is not None:  # another fit of the same model: how far do results move between fits?
        config = config.model_copy(update={"fit": config.fit.model_copy(update={"seed": seed})})
    series_list = [s for s in load_all(root) if any(f in s.name for f in name_filter)]
    out: dict[str, object] = {}
    for series in series_list:
        with tempfile.TemporaryDirectory() as scratch:
            prepared = prepare(series, config, Path(scratch), spread_floor)
        seed_everything(config.fit.seed, config.fit.threads)

        def layout(windows: np.ndarray, prepared: Prepared = prepared) -> np.ndarray:
            return np.ascontiguousarray(prepared.normalised(windows).transpose(0, 2, 1))

        train, holdout, test = (
            layout(w) for w in (prepared.sets.train, prepared.sets.holdout, prepared.test_windows)
        )
        nets = fit_networks(train, holdout, config.model, config.fit)
        remove_level = config.model.removes_window_level
        terms = ScoreTerms(nets.encoder, nets.generator, nets.critic, remove_level).eval()
        sample = train[:: max(1, len(train) // 2048)]
        rec_train, feat_train, z_train = _residuals(terms, sample)
        labels = series.test_labels
        rec_hold, feat_hold, z_hold = _residuals(terms, holdout)
        rec_test, feat_test, z_test = _residuals(terms, test)
        lat_train, lat_hold, lat_test = _latent_terms(z_train, z_train, z_hold, z_test)
        normaliser = prepared.sets.normaliser
        spread = normaliser.scale.copy()
        spread[normaliser.constant_channels] = 0.0  # constant channels are not floored
        if keep is not None:  # residuals kept so further variants need no refit
            keep.mkdir(parents=True, exist_ok=True)
            kept = {"train": (rec_train, feat_train, z_train), "hold": (rec_hold, feat_hold, z_hold)}
            kept["test"] = (rec_test, feat_test, z_test)
            arrays = {f"{term}_{part}": value for part, (rec, feat, z) in kept.items()
                      for term, value in (("rec", rec.mean(axis=2)), ("feat", feat), ("z", z))}  # fmt: skip
            arrays["spread"] = spread
            np.savez_compressed(keep / f"{series.name}.npz", labels=labels, **arrays)
        rows: dict[str, dict[str, float | None]] = {}
        for variant in VARIANTS:
            on_train, held, scores = _variant_scores(
                variant,
                spread,
                (rec_train, feat_train, lat_train),
                (rec_hold, feat_hold, lat_hold),
                (rec_test, feat_test, lat_test),
            )
            threshold = calibrated_threshold(held, config, on_train)
            summary = metrics.count(scores > threshold, labels).summary()
            rows[variant.name] = {
                "f1": summary["f1"],
                "false_alarm_rate": summary["false_alarm_rate"],
                "auc_pr": metrics.average_precision(scores, labels),
            }
            print(
                f"{series.name:40s} {variant.name:32s} F1 {summary['f1']:.3f} "
                f"FAR {summary['false_alarm_rate']:.4f} AP {rows[variant.name]['auc_pr'] or 0:.3f}",
                flush=True,
            )
        out[series.name] = rows
    return out


SWEEP_GRID = [
    Variant(0.1, latent_weight=latent, spread_floor=floor, residual_floor=residual)
    for floor in (0.0, 1.0)
    for latent in (0.0, 0.25, 0.5, 0.75)
    for residual in (0.05, 0.25, 1.0)
]


def sweep(folders: list[Path]) -> None:
    """Score kept residuals (`--keep` folders, one per fit) with SWEEP_GRID; no refit.

    Prints, per variant and fit, the series pooled: point-wise F1 / FAR / mean AUC-PR, POT on the holdout.
    Whole-window variants only (the kept residuals are averaged over the window).
    """
    config = benchmark_config(quick=False)
    fits = {folder: {p.stem: np.load(p) for p in sorted(folder.glob("*.npz"))} for folder in folders}
    latents = {(f, name): _latent_terms(d["z_train"], d["z_train"], d["z_hold"], d["z_test"])
               for f, kept in fits.items() for name, d in kept.items()}  # fmt: skip
    print("# variant: per fit (" + ", ".join(str(f) for f in folders) + "), pooled F1 / FAR / mean AUC-PR")
    for variant in SWEEP_GRID:
        cells = []
        for folder, kept in fits.items():
            total: metrics.Counts | None = None
            aps = []
            for name, d in kept.items():
                on_train, held, test = latents[folder, name]
                r, h, t = _variant_scores(
                    variant,
                    d["spread"],
                    (d["rec_train"][:, :, None], d["feat_train"], on_train),
                    (d["rec_hold"][:, :, None], d["feat_hold"], held),
                    (d["rec_test"][:, :, None], d["feat_test"], test),
                )
                counts = metrics.count(t > calibrated_threshold(h, config, r), d["labels"])
                total = counts if total is None else total + counts
                aps.append(metrics.average_precision(t, d["labels"]) or 0.0)
            assert total is not None
            summary = total.summary()
            cells.append(f"{summary['f1']:.3f} / {summary['false_alarm_rate']:.4f} / {np.mean(aps):.3f}")
        print(f"{variant.name:55s} " + "   ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", default="machine-2-1,machine-1-6,nyc_taxi,ec2_cpu_utilization_24ae8d")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--keep", type=Path, help="folder to keep each series' residuals in (.npz)")
    parser.add_argument("--seed", type=int, help="fit seed, to measure fit-to-fit spread")
    parser.add_argument("--out", default="score_variants", help="results file name (without .json)")
    parser.add_argument("--spread-floor", type=float, default=0.0, help="the fit's normaliser floor")
    parser.add_argument("--center", action="store_true", help="fit and score on level-free windows")
    parser.add_argument("--sweep", help="comma-separated --keep folders: score SWEEP_GRID on them, no fit")
    args = parser.parse_args()
    if args.sweep:
        sweep([Path(folder) for folder in args.sweep.split(",")])
        return
    series = args.series.split(",")
    report = evaluate(series, args.quick, args.datasets, args.keep, args.seed, args.spread_floor, args.center)
    print(f"wrote {write_result(args.out, {'variants': report})}")


if __name__ == "__main__":
    main()
