"""Write a bundle atomically: everything goes into a staging folder beside --out, is verified, then renamed.

A failed fit therefore leaves --out as it was: no half-written bundle for an agent to pick up.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_agent.bundle import MANIFEST_NAME, Bundle, BundleManifest, load_bundle, write_manifest
from edge_agent.signing import public_pem, sign_bundle
from trainer.errors import TrainerError

log = logging.getLogger(__name__)


def _public_key_file(stage: Path, sign_key: Path) -> Path:
    """The signing key's public half in a scratch file beside the stage, for the self-test."""
    path = stage.with_name(f".{stage.name}.pub")
    path.write_bytes(public_pem(sign_key))
    return path


def check_output_folder(out: Path) -> None:
    """Fail before training, not after: --out must be creatable, and not a folder of someone else's files."""
    if out.exists() and not out.is_dir():
        raise TrainerError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise TrainerError(f"--out {out}: folder is not empty and holds no bundle; refusing to replace it")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TrainerError(f"--out {out}: cannot create {parent} ({err.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TrainerError(f"--out {out}: {parent} is not writable")


@contextmanager
def staging_folder(out: Path) -> Iterator[Path]:
    """A temporary folder on the same filesystem as `out`; removed unless published."""
    parent = out.resolve().parent
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".staging", dir=parent))
    except OSError as err:
        raise TrainerError(f"--out {out}: cannot write in {parent} ({err.strerror})") from None
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, manifest: BundleManifest, out: Path, sign_key: Path | None = None) -> Bundle:
    """Write the manifest (and its signature, with `sign_key`), reopen the staged bundle through the agent's
    loader, then move it into place."""
    write_manifest(stage, manifest)
    trusted: list[Path] = []
    if sign_key is not None:
        sign_bundle(stage, sign_key)
        trusted = [_public_key_file(stage, sign_key)]
    load_bundle(stage, trusted_keys=trusted)  # self-test: the agent's checks pass before --out is replaced
    for temporary in trusted:
        temporary.unlink()
    target = out.resolve()
    previous = None
    if target.exists():
        previous = target.with_name(f".{target.name}.previous")
        shutil.rmtree(previous, ignore_errors=True)
        target.rename(previous)
    stage.rename(target)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    log.info("bundle %s written to %s", manifest.bundle_id, target)
    return load_bundle(target, check_shapes=False)
