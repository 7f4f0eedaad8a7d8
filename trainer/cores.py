"""How many cores a fit may use, and how parallel fits share them.

Why a share and not all: torch and ONNX Runtime spin-wait their thread pools, so workers x threads above the
cores slows every fit several times over (trainer/asset_fit.py's docstring has the figures).
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (a cpuset's or taskset's limit, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_per_worker(wanted: int, workers: int, cores: int) -> int:
    """fit.threads, cut so that all workers together fit in the cores (at least one each)."""
    return max(1, min(wanted, cores // max(1, workers)))
