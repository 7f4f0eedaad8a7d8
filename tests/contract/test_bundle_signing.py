"""Signed bundles: the trainer signs bundle.json; agents with trusted keys refuse unsigned or tampered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_agent.bundle import MANIFEST_NAME, SCORER_INT8, load_bundle
from edge_agent.errors import BundleError, ConfigError
from edge_agent.signing import SIGNATURE_NAME, generate_keypair


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def signed_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path, keys: tuple[Path, Path]) -> Path:
    from tests.conftest import write_tiny_config
    from trainer.cli import main

    folder = tmp_path_factory.mktemp("signed")
    out = folder / "bundle"
    config = write_tiny_config(folder)
    assert (
        main(
            [
                "fit",
                "--data",
                str(tiny_data),
                "--out",
                str(out),
                "--config",
                str(config),
                "--sign-key",
                str(keys[0]),
            ]
        )
        == 0
    )
    return out


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(tmp_path: Path) -> None:
    from trainer.cli import main

    assert main(["keygen", "--out", str(tmp_path)]) == 0
    private = tmp_path / "edgegan-signing.key"
    assert private.stat().st_mode & 0o777 == 0o600 and (tmp_path / "edgegan-signing.pub").is_file()
    with pytest.raises(ConfigError, match="not overwriting"):
        generate_keypair(tmp_path)


def test_a_signed_bundle_loads_with_its_key(signed_bundle: Path, keys: tuple[Path, Path]) -> None:
    assert (signed_bundle / SIGNATURE_NAME).stat().st_size == 64
    assert load_bundle(signed_bundle, trusted_keys=[keys[1]]).manifest.bundle_id


@pytest.mark.faults
def test_a_tampered_threshold_is_refused(
    signed_bundle: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The attack of the issue: every threshold raised to 1e12 passes the hashes but not the signature."""
    copy = tmp_path / "tampered"
    shutil.copytree(signed_bundle, copy)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    for threshold in manifest["thresholds"].values():
        threshold["value"] = 1e12
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert load_bundle(copy).manifest.thresholds[SCORER_INT8].value == 1e12  # without keys: accepted
    with pytest.raises(BundleError, match="matches no trusted key"):
        load_bundle(copy, trusted_keys=[keys[1]])


def test_an_unsigned_bundle_or_another_key_is_refused(
    tiny_bundle: Path, signed_bundle: Path, tmp_path: Path
) -> None:
    _, other = generate_keypair(tmp_path / "other")
    with pytest.raises(BundleError, match="unsigned"):
        load_bundle(tiny_bundle, trusted_keys=[other])
    with pytest.raises(BundleError, match="matches no trusted key"):
        load_bundle(signed_bundle, trusted_keys=[other])
