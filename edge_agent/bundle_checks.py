"""What `load_bundle` verifies before anything is served: schema, consistency, hashes and graph shapes.

Each check raises BundleError with the file and the field at fault, so a corrupt or tampered bundle is
refused with a message that says what and where.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from edge_agent.bundle import (
    GENERATOR,
    GENERATOR_INPUT,
    GENERATOR_OUTPUT,
    MANIFEST_NAME,
    REQUIRED_MODELS,
    SCHEMA_VERSION,
    SCORER_FP32,
    SCORER_INPUT,
    SCORER_INT8,
    SCORER_OUTPUT_CONTRIBUTIONS,
    SCORER_OUTPUT_SCORE,
    BundleManifest,
    sha256_file,
)
from edge_agent.errors import BundleError


def read_manifest(path: Path) -> BundleManifest:
    """bundle.json parsed and validated against the schema this agent reads."""
    if not path.is_dir():
        raise BundleError(f"{path}: bundle folder not found")
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{path}: no {MANIFEST_NAME} in the bundle folder")
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{manifest_path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{manifest_path}: expected a JSON object")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: schema version {version!r}, this agent reads version {SCHEMA_VERSION}"
        )
    try:
        return BundleManifest.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BundleError(f"{manifest_path}: {where}: {first['msg']}") from None


def check_consistency(path: Path, manifest: BundleManifest) -> None:
    """Per-channel lists as long as the channels, channel names that are channels, the required graphs
    listed, a threshold for each scorer."""
    n_channels = len(manifest.channels)
    if len(set(manifest.channels)) != n_channels:
        raise BundleError(f"{path}: duplicate channel names in {MANIFEST_NAME}")
    per_channel = {
        "normalisation.mean": manifest.normalisation.mean,
        "normalisation.scale": manifest.normalisation.scale,
        "score.channel_residual_scale": manifest.score.channel_residual_scale,
    }
    for index, member in enumerate(manifest.score.members):
        per_channel[f"score.members[{index}].channel_residual_scale"] = member.channel_residual_scale
    for name, values in per_channel.items():
        if len(values) != n_channels:
            raise BundleError(f"{path}: {name} has {len(values)} values for {n_channels} channels")
    unknown = sorted(set(manifest.score.level_left_out) - set(manifest.channels))
    if unknown:
        names = ", ".join(unknown)
        raise BundleError(f"{path}: score.level_left_out names {names}, not channels of this bundle")
    if any(s <= 0 for s in manifest.normalisation.scale):
        raise BundleError(f"{path}: normalisation.scale must be positive")
    for model in REQUIRED_MODELS:
        if model not in manifest.files:
            raise BundleError(f"{path}: {MANIFEST_NAME} does not list the required file {model}")
    for model in (SCORER_FP32, SCORER_INT8):
        if model not in manifest.thresholds:
            raise BundleError(f"{path}: no calibrated threshold for {model}")


def check_hashes(path: Path, manifest: BundleManifest) -> None:
    """Every listed file inside the folder, present, and byte for byte what the manifest hashed."""
    for name, entry in manifest.files.items():
        file_path = path / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{path}: file name {name!r} escapes the bundle folder")
        if not file_path.is_file():
            raise BundleError(f"{file_path}: listed in {MANIFEST_NAME} but missing")
        actual = sha256_file(file_path)
        if actual != entry.sha256:
            raise BundleError(
                f"{file_path}: sha256 {actual[:12]}… does not match the manifest's {entry.sha256[:12]}…"
                " (file changed or corrupt)"
            )


def check_graph_shapes(path: Path, manifest: BundleManifest) -> None:
    """Each graph loads and its tensors have the names and shapes of the contract."""
    # Imported here: onnxruntime takes ~0.3 s to import and `--help` must stay instant.
    import onnxruntime as ort

    window, channels = manifest.window_len, len(manifest.channels)
    expected = {
        SCORER_FP32: (
            {SCORER_INPUT: [window, channels]},
            {SCORER_OUTPUT_SCORE: [], SCORER_OUTPUT_CONTRIBUTIONS: [channels]},
        ),
        SCORER_INT8: (
            {SCORER_INPUT: [window, channels]},
            {SCORER_OUTPUT_SCORE: [], SCORER_OUTPUT_CONTRIBUTIONS: [channels]},
        ),
        GENERATOR: ({GENERATOR_INPUT: [manifest.latent_dim]}, {GENERATOR_OUTPUT: [window, channels]}),
    }
    # Loading is all this check needs: one thread, no graph optimisation, no memory arena. With the
    # defaults (a thread per core, optimised graphs) an idle agent held 1.4 MB more, never given back.
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_cpu_mem_arena = False
    for name, (inputs, outputs) in expected.items():
        model_path = path / name
        try:
            session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT raises its own untyped errors for corrupt graphs
            raise BundleError(f"{model_path}: onnxruntime cannot load the graph ({err})") from None
        actual_in = {arg.name: arg.shape for arg in session.get_inputs()}
        actual_out = {arg.name: arg.shape for arg in session.get_outputs()}
        _compare_shapes(model_path, "input", inputs, actual_in)
        _compare_shapes(model_path, "output", outputs, actual_out)


def _compare_shapes(
    model_path: Path, kind: str, expected: dict[str, list[int]], actual: dict[str, list[int | str | None]]
) -> None:
    if set(expected) != set(actual):
        raise BundleError(f"{model_path}: {kind} names {sorted(actual)}, expected {sorted(expected)}")
    for name, tail in expected.items():
        shape = actual[name]
        # The first axis is the dynamic batch; the rest must equal the manifest exactly.
        if len(shape) != len(tail) + 1 or list(shape[1:]) != tail:
            raise BundleError(
                f"{model_path}: {kind} {name!r} has shape {shape}, "
                f"expected [batch, {', '.join(map(str, tail))}]"
            )
