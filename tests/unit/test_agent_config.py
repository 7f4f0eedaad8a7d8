"""Agent config: the sample file is the defaults, typos are errors with their line, flags win."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import broker_from_url, load_agent_config
from edge_agent.errors import ConfigError
from edge_agent.routing import device_of

SAMPLE = Path(__file__).resolve().parents[2] / "configs" / "agent.yaml"


def test_sample_config_equals_the_defaults() -> None:
    assert load_agent_config(SAMPLE) == load_agent_config(None)


def test_unknown_key_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("agent_id: gw-1\nbroker:\n  host: x\n  prot: 5\n")
    with pytest.raises(ConfigError, match=r"a\.yaml:4: broker\.prot: Extra inputs"):
        load_agent_config(path)


def test_flags_override_file_and_merge_sections(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("broker:\n  host: old\n  keepalive_s: 60\n")
    config = load_agent_config(path, {"broker": broker_from_url("mqtt://new:1884"), "agent_id": None})
    assert (config.broker.host, config.broker.port, config.broker.keepalive_s) == ("new", 1884, 60)
    assert config.agent_id == "edge-1"


def test_telemetry_filter_needs_one_device_level() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        load_agent_config(None, {"topics": {"telemetry": "sensors/#"}})
    topics = load_agent_config(None).topics
    assert device_of(topics.telemetry, "sensors/pump-1/telemetry") == "pump-1"
    assert device_of(topics.telemetry, "sensors/pump-1/other") is None


def test_a_broker_url_can_ask_for_mqtt_311_and_says_what_it_does_not_understand() -> None:
    assert broker_from_url("mqtt://nats:1883?protocol=3.1.1") == {
        "host": "nats",
        "port": 1883,
        "protocol": "3.1.1",
    }
    assert "protocol" not in broker_from_url("mqtt://m:1883")
    with pytest.raises(ConfigError, match="protocol must be 5 or 3.1.1"):
        broker_from_url("mqtt://m:1883?protocol=4")
    with pytest.raises(ConfigError, match="unknown option 'qos'"):
        broker_from_url("mqtt://m:1883?qos=1")


def test_bad_broker_url_and_missing_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="expected mqtt://"):
        broker_from_url("http://x")
    config = load_agent_config(None, {"broker": {"password_env": "EDGEGAN_TEST_PW"}})
    monkeypatch.delenv("EDGEGAN_TEST_PW", raising=False)
    with pytest.raises(ConfigError, match="EDGEGAN_TEST_PW is not set"):
        config.broker.password()
    monkeypatch.setenv("EDGEGAN_TEST_PW", "s3cret")
    assert config.broker.password() == "s3cret"


def test_validate_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge_agent.cli import main

    assert main(["run", "--config", str(SAMPLE), "--validate-config"]) == 0
    assert '"valid": true' in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("decision:\n  start_after: 0\n")
    assert main(["run", "--config", str(bad), "--validate-config"]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:2: decision.start_after" in err and len(err.strip().splitlines()) == 1


def test_json_log_lines() -> None:
    import json
    import logging

    from edge_agent.command_runner import JsonLogFormatter

    record = logging.LogRecord("edge_agent.x", logging.WARNING, __file__, 1, "lost %s", ("broker",), None)
    entry = json.loads(JsonLogFormatter().format(record))
    assert (
        entry["level"] == "warning"
        and entry["message"] == "lost broker"
        and entry["logger"] == "edge_agent.x"
    )
