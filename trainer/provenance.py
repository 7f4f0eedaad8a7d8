"""Versions, seeds and timing that make a bundle reproducible and explainable."""

from __future__ import annotations

import os
import random
from datetime import datetime, timezone

import numpy as np


def seed_everything(seed: int, threads: int) -> None:
    """Same data and seed give the same model: seed every RNG and pin torch to deterministic kernels."""
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code may still use the global RNG
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def versions() -> dict[str, str]:
    """Versions of the packages that shape the bundle."""
    import onnxruntime
    import torch

    from trainer import __version__

    return {"package": __version__, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def utc_now() -> str:
    """ISO 8601 UTC timestamp, seconds precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()
