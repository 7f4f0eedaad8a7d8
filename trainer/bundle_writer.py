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
from trainer.errors import TrainerError

log = logging.getLogger(__name__)


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


def publish(stage: Path, manifest: BundleManifest, out: Path) -> Bundle:
    """Write the manifest, reopen the staged bundle through the agent's loader, then move it into place."""
    write_manifest(stage, manifest)
    load_bundle(stage)  # self-test: the agent's own checks must pass before anything replaces --out
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
