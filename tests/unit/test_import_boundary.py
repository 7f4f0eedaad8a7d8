"""The edge agent must run on gateways without torch: importing it must never pull torch in."""

from __future__ import annotations

import subprocess
import sys


def test_edge_agent_and_its_cli_never_import_torch_or_trainer() -> None:
    code = (
        "import sys, edge_agent, edge_agent.cli, edge_agent.bundle, edge_agent.tabular, "
        "edge_agent.backends.onnx_runtime\n"
        "from edge_agent.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'trainer', 'pandas'})\n"
        "print('LOADED:' + ','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "LOADED:"
    assert "usage: edge-agent" in result.stdout
