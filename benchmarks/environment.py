"""What a benchmark result must carry to be comparable: machine, versions, time."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def describe_machine() -> dict[str, object]:
    """CPU, cores and package versions."""
    import numpy
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    try:
        first_core = Path("/proc/cpuinfo").read_text().split("\n\n", 1)[0]
        for line in first_core.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    cpu = fields.get("model name", cpu)
    info: dict[str, object] = {
        "cpu": cpu,
        # Machines lent under one model name ("AMD EPYC") differ in generation, and with it in the kernels
        # torch picks, so fits of the same code and seed can differ between them (REPORT.md, round 27).
        "cpu_id": " ".join(f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        pass
    return info


def write_result(name: str, payload: dict[str, object]) -> Path:
    """benchmarks/results/NAME.json with the machine description attached."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": describe_machine(), **payload}, indent=2) + "\n")
    return path
