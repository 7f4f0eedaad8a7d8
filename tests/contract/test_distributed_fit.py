"""`torchrun` with two CPU processes (gloo): the same bundle, with the same metrics, as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edge_agent.bundle import load_bundle
from tests.conftest import write_tiny_config


def _keys(value: object, prefix: str = "") -> set[str]:
    if not isinstance(value, dict):
        return {prefix}
    return {key for name, item in value.items() for key in _keys(item, f"{prefix}/{name}")}


def test_two_process_data_parallel_fit_writes_a_normal_bundle(
    tmp_path: Path, tiny_data: Path, tiny_bundle: Path
) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "ddp-bundle"
    config = write_tiny_config(tmp_path, free_level=True)  # the ranks must agree on fitting a second level
    command = [
        str(torchrun), "--standalone", "--nproc_per_node", "2",
        "-m", "trainer", "fit", "--data", str(tiny_data), "--out", str(out), "--config", str(config),
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # Both ranks trained; their weights were checked equal at the end (the fit fails otherwise).
    assert "rank 1 of 2 (gloo)" in done.stderr and "rank 0 of 2 (gloo)" in done.stderr
    parallel, single = load_bundle(out), load_bundle(tiny_bundle)
    kernels = {"cpu_kernels": single.manifest.validation["training"]["cpu_kernels"]}
    torch_names = {"DEFAULT", "VSX", "Z VECTOR", "NO AVX", "AVX2", "AVX512", "SVE256"}
    assert kernels["cpu_kernels"] in torch_names
    assert parallel.manifest.validation["training"] == {"world_size": 2, "backend": "gloo", **kernels}
    assert single.manifest.validation["training"] == {"world_size": 1, "backend": "none", **kernels}
    level = parallel.manifest.validation["auto"]["window_level"]  # type: ignore[index]
    assert set(level["fit_seconds"]) == {"remove", "keep"}  # both ranks fitted both levels
    chosen = {k for k in _keys(parallel.manifest.validation) if not k.startswith("/auto/window_level")}
    assert chosen == _keys(single.manifest.validation)
    assert parallel.manifest.files.keys() == single.manifest.files.keys()
    assert parallel.manifest.thresholds.keys() == single.manifest.thresholds.keys()
    assert not (tmp_path / "ddp-bundle.partial").exists()
