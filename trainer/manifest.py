"""The write stage's record: bundle.json's manifest from the data, windows, score, thresholds and checks."""

from __future__ import annotations

from pathlib import Path

from edge_agent.bundle import (
    GENERATOR,
    SCHEMA_VERSION,
    SCORER_FP32,
    SCORER_INT8,
    BundleManifest,
    Normalisation,
    Provenance,
    ScoreDefinition,
    Threshold,
    file_entry,
)
from trainer.config import TrainConfig
from trainer.csv_data import TrainingData
from trainer.provenance import utc_now, versions
from trainer.windows import WindowSets


def build_manifest(
    stage: Path,
    data: TrainingData,
    windows: WindowSets,
    config: TrainConfig,
    score: ScoreDefinition,
    thresholds: dict[str, Threshold],
    validation: dict[str, object],
    fit_seconds: float,
) -> BundleManifest:
    roles = {SCORER_FP32: "scorer-fp32", SCORER_INT8: "scorer-int8", GENERATOR: "generator"}
    files = {p.name: file_entry(p, roles.get(p.name, "plot")) for p in sorted(stage.iterdir()) if p.is_file()}
    created = utc_now()
    version = versions()
    scorer_hash = files[SCORER_FP32].sha256[:10]
    return BundleManifest(
        schema_version=SCHEMA_VERSION,
        bundle_id=f"edgegan-{created[:10]}-{scorer_hash}",
        channels=data.channels,
        window_len=config.model.window_len,
        hop_len=config.model.hop_len,
        latent_dim=config.model.latent_dim,
        sample_period_s=data.sample_period_s,
        normalisation=Normalisation(
            method="standard",
            mean=windows.normaliser.mean.tolist(),
            scale=windows.normaliser.scale.tolist(),
            low=windows.train_range()[0].astype(float).tolist(),
            high=windows.train_range()[1].astype(float).tolist(),
        ),
        score=score,
        thresholds=thresholds,
        files=files,
        provenance=Provenance(
            data_fingerprint=data.fingerprint,
            data_files=data.report.files,
            rows_train=windows.rows_train,
            rows_holdout=windows.rows_holdout,
            seed=config.fit.seed,
            epochs=config.fit.epochs,
            package_version=version["package"],
            torch_version=version["torch"],
            onnxruntime_version=version["onnxruntime"],
            created_at=created,
            fit_seconds=round(fit_seconds, 2),
            data_cleaning=data.report.counts(),
        ),
        validation=validation,  # type: ignore[arg-type]
    )
