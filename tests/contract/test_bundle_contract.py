"""The fitted bundle: complete, verified by the agent's loader, runnable in onnxruntime, and it detects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from edge_agent.backends import open_scorer
from edge_agent.bundle import (
    GENERATOR,
    MANIFEST_NAME,
    SCORER_FP32,
    SCORER_INT8,
    load_bundle,
    sha256_file,
)
from edge_agent.cli import main as agent_main
from edge_agent.errors import BundleError
from tests.conftest import SIMULATED_SECTIONS, correlated_series
from trainer.fit_summary import summary_table
from trainer.synthetic_anomalies import auroc


def test_bundle_is_complete_and_verifies(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    manifest = bundle.manifest
    assert manifest.channels == ["s0", "s1", "s2"]
    assert {SCORER_FP32, SCORER_INT8, GENERATOR, "training_curves.png"} <= set(manifest.files)
    assert all((tiny_bundle / name).stat().st_size > 0 for name in manifest.files)
    for model in (SCORER_FP32, SCORER_INT8):
        threshold = manifest.thresholds[model]
        assert threshold.value > 0 and threshold.method in {"pot", "quantile"}
    assert manifest.provenance.seed == 3 and len(manifest.provenance.data_fingerprint) == 64
    # Plots are real PNGs.
    assert (tiny_bundle / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_onnx_graphs_run_with_any_batch(tiny_bundle: Path) -> None:
    manifest = load_bundle(tiny_bundle).manifest
    for model in (SCORER_FP32, SCORER_INT8):
        session = ort.InferenceSession(str(tiny_bundle / model), providers=["CPUExecutionProvider"])
        for batch in (1, 7):
            windows = np.random.default_rng(batch).normal(size=(batch, 32, 3)).astype(np.float32)
            score, contributions = session.run(None, {"windows": windows})
            assert score.shape == (batch,) and contributions.shape == (batch, 3)
            # Contributions split the score among channels.
            np.testing.assert_allclose(contributions.sum(axis=1), score, rtol=1e-4)
    generator = ort.InferenceSession(str(tiny_bundle / GENERATOR), providers=["CPUExecutionProvider"])
    (windows,) = generator.run(
        None, {"latent": np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)}
    )
    assert windows.shape == (5, 32, 3)
    # Raw units: the generated first channel lives around the training data's level of about 10.
    assert (
        abs(float(windows[..., 0].mean()) - manifest.normalisation.mean[0])
        < 3 * manifest.normalisation.scale[0]
    )


def _normal_windows(count: int) -> np.ndarray:
    series = correlated_series(3000, seed=99)  # unseen normal data, same process
    starts = np.linspace(0, len(series) - 32, count).astype(int)
    return np.stack([series[s : s + 32] for s in starts]).astype(np.float32)


def _anomalies(normal: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    out = normal.copy()
    std = normal.reshape(-1, 3).std(axis=0)
    for i in range(len(out)):
        channel = rng.integers(3)
        if kind == "spike":
            out[i, rng.integers(16, 32), channel] += 8 * std[channel]
        elif kind == "level_shift":
            out[i, 16:, channel] += 3 * std[channel]
        else:  # broken correlation: one channel replaced by the same channel at another time
            out[i, :, channel] = normal[(i + len(out) // 2) % len(out), :, channel]
    return out


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("kind", ["spike", "level_shift", "broken_correlation"])
def test_injected_anomalies_score_above_normal(tiny_bundle: Path, precision: str, kind: str) -> None:
    scorer = open_scorer(load_bundle(tiny_bundle), precision=precision)
    normal = _normal_windows(300)
    anomalous = _anomalies(normal, kind, np.random.default_rng(5))
    area = auroc(scorer.score(normal).scores, scorer.score(anomalous).scores)
    assert area > 0.85, f"{kind} {precision}: AUROC {area:.3f}"


def test_int8_parity_is_recorded_and_holds(tiny_bundle: Path) -> None:
    manifest = load_bundle(tiny_bundle).manifest
    parity = manifest.validation["int8_vs_fp32"]
    assert isinstance(parity, dict)
    assert parity["rank_correlation"] >= 0.95
    assert parity["decision_agreement"] >= 0.9
    assert parity["normal_decision_agreement"] >= 0.99
    assert manifest.validation["fp32_vs_torch_relative_error"] < 1e-3  # type: ignore[operator]
    # And it holds on data the fit never saw.
    bundle = load_bundle(tiny_bundle)
    windows = _normal_windows(200)
    fp32 = open_scorer(bundle, precision="fp32").score(windows).scores
    int8 = open_scorer(bundle, precision="int8").score(windows).scores
    assert np.corrcoef(np.argsort(np.argsort(fp32)), np.argsort(np.argsort(int8)))[0, 1] > 0.8


def test_the_int8_graph_says_whether_it_quantised_the_generator_and_matches_what_it_says(
    tiny_bundle: Path,
) -> None:
    import onnx

    from trainer.int8_choice import INT8_WITH_GENERATOR, MAX_RECALL_LOSS

    record = load_bundle(tiny_bundle).manifest.validation["int8_layers"]
    assert isinstance(record, dict)
    served = record["generator_hidden_layers"]
    assert served in ("int8", "fp32")
    assert not (tiny_bundle / INT8_WITH_GENERATOR).exists()  # the losing candidate is not shipped
    candidates = record["candidates"]
    if served == "int8":  # chosen only where no injected kind lost more than the allowance
        for kind, recall in candidates["generator_fp32"]["recall_by_kind"].items():
            assert candidates["generator_int8"]["recall_by_kind"][kind] >= recall - MAX_RECALL_LOSS
    model = onnx.load(str(tiny_bundle / SCORER_INT8))
    produced_by = {out: node.op_type for node in model.graph.node for out in node.output}
    generator_quantised = any(
        produced_by.get(node.input[1]) == "DequantizeLinear"
        for node in model.graph.node
        if node.op_type == "Conv" and any("generator.upsample" in p.value for p in node.metadata_props)
    )
    assert generator_quantised == (served == "int8")


def test_a_short_holdout_is_joined_by_the_training_windows_scored_out_of_sample(tiny_bundle: Path) -> None:
    """1,200 rows leave 209 holdout windows, too few for a 1e-3 budget: every training window is scored by
    a fit that never saw its readings, and that calibration counts towards every threshold."""
    manifest = load_bundle(tiny_bundle).manifest
    record = manifest.validation["cross_fit"]
    assert isinstance(record, dict)
    assert record["skipped"] is None and record["folds"] == 2
    assert len(record["scale_factors"]) == 2 and all(factor > 0 for factor in record["scale_factors"])
    assert record["left_out_folds"] == []  # both fold fits read the holdout like the full fit, within 10x
    assert record["windows"] == 960 - 32 + 1  # every training window of the 960 training rows
    for threshold in manifest.thresholds.values():
        details = threshold.details
        assert details["cross_fit_windows"] == record["windows"]
        parts = ("holdout_threshold", "train_threshold", "cross_fit_threshold")
        assert threshold.value == max(details[part] for part in parts)
        assert threshold.calibration_windows == 209 + details["train_windows"] + record["windows"]
        assert all(
            level.value >= details["cross_fit_threshold"]
            for level in threshold.levels.values()
            if level.false_alarm_budget < threshold.false_alarm_budget
        )
    # The fit's summary says what backs the threshold.
    summary = summary_table(load_bundle(tiny_bundle), fit_seconds=1.0)
    fp32 = manifest.thresholds[SCORER_FP32]
    assert f"holdout 209, training windows (in sample) {fp32.details['train_windows']:.0f}" in summary
    assert "training windows cross-fitted 929" in summary
    # The release gate is recorded, one ratio per member, and the summary prints it.
    ratios = manifest.validation["release_gate"]["ratios"]
    assert len(ratios) == max(1, len(manifest.score.members))
    assert all(ratio is not None and ratio > 0 for ratio in ratios)
    assert f"release gate: score = min(full, {ratios[0]:.3g} x" in summary
    # A gated bundle's graphs share one threshold: the ungated score's, calibrated once.
    fp32_value, int8_value = (manifest.thresholds[name].value for name in (SCORER_FP32, SCORER_INT8))
    assert fp32_value == int8_value


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


@pytest.mark.faults
def test_tampered_model_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = _copy(tiny_bundle, tmp_path)
    with (copy / SCORER_INT8).open("r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match=r"scorer\.int8\.onnx: sha256 .* does not match"):
        load_bundle(copy)


@pytest.mark.faults
def test_corrupt_model_with_matching_hash_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = _copy(tiny_bundle, tmp_path)
    (copy / SCORER_FP32).write_bytes(b"not an onnx graph")
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    manifest["files"][SCORER_FP32]["sha256"] = sha256_file(copy / SCORER_FP32)
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="onnxruntime cannot load"):
        load_bundle(copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(schema_version=99), "schema version 99"),
        (lambda m: m.update(channels=["a", "b"]), "has 3 values for 2 channels"),
        (lambda m: m.update(window_len=48), r"shape \['batch', 32, 3\], expected \[batch, 48, 3\]"),
        (lambda m: m["files"].pop(GENERATOR), "required file generator.onnx"),
        (lambda m: m.update(bundle_id="../../etc"), "bundle_id"),
        (
            lambda m: m["score"].update(level_left_out=["no_such_channel"]),
            "score.level_left_out names no_such_channel, not channels of this bundle",
        ),
        (
            lambda m: m["score"].update(
                members=[{"seed": 3, "channel_residual_scale": [1.0, 1.0], "feature_residual_scale": 1.0}]
            ),
            r"score.members\[0\].channel_residual_scale has 2 values for 3 channels",
        ),
    ],
)
def test_manifest_that_does_not_match_is_refused(
    tiny_bundle: Path, tmp_path: Path, edit: object, message: str
) -> None:
    copy = _copy(tiny_bundle, tmp_path)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    edit(manifest)  # type: ignore[operator]
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        load_bundle(copy)


def test_missing_folder_and_manifest_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="bundle folder not found"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="no bundle.json"):
        load_bundle(tmp_path)


def test_the_floors_in_the_config_reach_the_bundle(
    tmp_path: Path, tiny_data: Path, tiny_bundle: Path
) -> None:
    """data.spread_floor and score.residual_floor are applied by the fit, not only by their functions."""
    from tests.conftest import write_tiny_config
    from trainer.cli import main

    def fit(name: str, residual_floor: float) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        score = {"residual_floor": residual_floor}
        config = write_tiny_config(folder, data={"spread_floor": 1.0}, score=score)
        assert (
            main(["fit", "--data", str(tiny_data), "--out", str(folder / "bundle"), "--config", str(config)])
            == 0
        )
        return folder / "bundle"

    low, high = load_bundle(fit("low", 0.05)).manifest, load_bundle(fit("high", 1.0)).manifest
    plain = np.array(load_bundle(tiny_bundle).manifest.normalisation.scale)
    median = float(np.median(plain))
    # The quiet third channel (the negated square) is lifted to the median spread; the others keep theirs.
    assert plain[2] < median
    np.testing.assert_allclose(low.normalisation.scale, np.maximum(plain, median), rtol=1e-6)
    # Same seeded fit, residual floor 1 instead of 0.05: no channel's scale stays below the mean one.
    residual = np.array(low.score.channel_residual_scale)
    assert residual.min() > 0.05 * residual.mean()  # nothing was lifted at 0.05, so these are the medians
    assert residual.min() < residual.mean()  # and at 1 something must be
    np.testing.assert_allclose(
        high.score.channel_residual_scale, np.maximum(residual, residual.mean()), rtol=1e-4
    )


def test_level_free_networks_leave_levels_to_the_level_term(
    tmp_path: Path, tiny_data: Path, tiny_bundle: Path
) -> None:
    """The default `model.window_level: remove` is fitted and exported: the graph drops each window's level
    before the networks, and its level term alone flags a lasting offset; with the level term's weight at
    0 the same offset changes nothing, while a step inside the window still alarms. `keep` is recorded."""
    from tests.conftest import write_tiny_config
    from trainer.cli import main

    config = write_tiny_config(tmp_path, score={"level_weight": 0.0})
    out = tmp_path / "bundle"
    assert main(["fit", "--data", str(tiny_data), "--out", str(out), "--config", str(config)]) == 0
    manifest = load_bundle(out).manifest
    default = load_bundle(tiny_bundle).manifest
    assert manifest.score.window_level == "remove" and default.score.window_level == "remove"
    assert manifest.score.term_weights["level"] == 0.0 and default.score.term_weights["level"] == 1.0
    values = correlated_series(400, seed=5)
    windows = np.stack([values[i : i + 32] for i in range(0, 360, 4)]).astype(np.float32)
    offset = windows + (4 * np.array(manifest.normalisation.scale)).astype(np.float32)
    step = windows.copy()
    step[:, 16:, 0] += 4 * manifest.normalisation.scale[0]

    def scores(bundle: Path, batch: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(str(bundle / SCORER_FP32), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {"windows": batch})[0])

    np.testing.assert_allclose(scores(out, offset), scores(out, windows), rtol=1e-3, atol=1e-4)
    threshold = manifest.thresholds[SCORER_FP32].value
    assert np.median(scores(out, step)) > threshold  # a step inside the window still alarms
    # The default bundle's level term alarms on the same lasting offset.
    assert np.median(scores(tiny_bundle, offset)) > default.thresholds[SCORER_FP32].value
    kept = tmp_path / "kept"
    config = write_tiny_config(tmp_path, model={"window_level": "keep"})
    assert main(["fit", "--data", str(tiny_data), "--out", str(kept), "--config", str(config)]) == 0
    assert load_bundle(kept).manifest.score.window_level == "keep"


def test_a_bundle_of_members_scores_the_mean_of_its_fits(
    tmp_path: Path, tiny_data: Path, tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`model.members: 2` with seed 3 holds the very fits of one-member bundles with seeds 3 and 4, and
    its one graph returns the mean of their scores and contributions."""
    from tests.conftest import write_tiny_config
    from trainer.cli import main

    def fit(name: str, **sections: dict[str, object]) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        config = write_tiny_config(folder, **sections)
        out = folder / "bundle"
        assert main(["fit", "--data", str(tiny_data), "--out", str(out), "--config", str(config)]) == 0
        return out

    every_row = SIMULATED_SECTIONS["fit"]  # tiny_bundle's windows: it is the seed-3 fit compared with
    seed4 = fit("seed4", fit={"seed": 4, **every_row})
    pair = fit("pair", model={"members": 2}, fit=every_row)
    manifest = load_bundle(pair).manifest
    single = load_bundle(tiny_bundle).manifest
    assert [member.seed for member in manifest.score.members] == [3, 4]
    assert single.score.members == [] and manifest.provenance.seed == 3
    assert manifest.score.channel_residual_scale == single.score.channel_residual_scale
    np.testing.assert_allclose(
        manifest.score.members[1].channel_residual_scale,
        load_bundle(seed4).manifest.score.channel_residual_scale,
        rtol=1e-6,
    )
    assert len(manifest.validation["gan_members"]) == 2  # type: ignore[arg-type]

    capsys.readouterr()  # drop what the fits printed
    assert agent_main(["verify", "--bundle", str(pair)]) == 0
    assert json.loads(capsys.readouterr().out)["fit_seeds"] == [3, 4]

    values = correlated_series(400, seed=5)
    windows = np.stack([values[i : i + 32] for i in range(0, 360, 4)]).astype(np.float32)
    windows[::3, 10:20, 1] += 3.0  # some anomalous windows, so the mean is checked where scores differ

    def outputs(bundle: Path) -> tuple[np.ndarray, np.ndarray]:
        session = ort.InferenceSession(str(bundle / SCORER_FP32), providers=["CPUExecutionProvider"])
        score, contributions = session.run(None, {"windows": windows})
        return np.asarray(score), np.asarray(contributions)

    (score_a, parts_a), (score_b, parts_b) = outputs(tiny_bundle), outputs(seed4)
    score, parts = outputs(pair)
    assert not np.allclose(score_a, score_b, rtol=0.05)  # two seeds really are two different fits
    np.testing.assert_allclose(score, (score_a + score_b) / 2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(parts, (parts_a + parts_b) / 2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(parts.sum(axis=1), score, rtol=1e-4)
    int8 = open_scorer(load_bundle(pair), precision="int8", threads=1)
    assert np.corrcoef(int8.score(windows).scores, score)[0, 1] > 0.9


def test_verify_names_the_channels_left_out_of_the_level_term(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bundle whose level term leaves a channel out: `edge-agent verify` accepts it and says which."""
    copy = _copy(tiny_bundle, tmp_path)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    manifest["score"]["level_left_out"] = [manifest["channels"][1]]
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert agent_main(["verify", "--bundle", str(copy)]) == 0
    assert f"level term leaves out {manifest['channels'][1]}: drifted" in capsys.readouterr().err
    assert agent_main(["verify", "--bundle", str(tiny_bundle)]) == 0
    assert "level term leaves out" not in capsys.readouterr().err
