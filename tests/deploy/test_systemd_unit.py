"""deploy/systemd: the unit verifies and is hardened (the daemon's sd_notify: tests/integration)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "deploy" / "systemd" / "edgegan-agent.service"


def _installed_copy(folder: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's console script, as an install would."""
    script = Path(sys.executable).parent / "edge-agent"
    copy = folder / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/edgegan/venv/bin/edge-agent", str(script)))
    return copy


@pytest.fixture
def analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed on this machine (no systemd)")
    return tool


def test_unit_verifies_cleanly(analyze: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [analyze, "verify", str(_installed_copy(tmp_path))], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_unit_exposure_is_low(analyze: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(_installed_copy(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
    assert found, result.stdout[-500:]
    assert float(found.group(1)) <= 2.0  # systemd's scale: 0 (locked down) to 10 (exposed)
