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


def test_the_daemon_loads_the_sparkplug_payloads_only_when_sparkplug_is_enabled() -> None:
    """The payload classes and the Sparkplug state cost about 4 MB of the agent's memory: importing the daemon
    must not load them (ingest imports them when `sparkplug.enabled` builds the state)."""
    code = (
        "import sys, edge_agent.cli, edge_agent.service, edge_agent.ingest, edge_agent.mqtt_link\n"
        "payloads = {'edge_agent.sparkplug', 'edge_agent.sparkplug_schema'}\n"
        "loaded = sorted(m for m in sys.modules if m in payloads)\n"
        "print('LOADED:' + ','.join(loaded))\n"
        "from edge_agent.config import AgentConfig\n"
        "from edge_agent.ingest import _sparkplug_state\n"
        "print('ENABLED:' + type(_sparkplug_state(AgentConfig(), {}, None)).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == ["LOADED:", "ENABLED:SparkplugState"]
