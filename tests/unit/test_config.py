"""Training config: unknown keys and impossible shapes are errors with their key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.errors import ConfigError
from trainer.config import ScoreConfig, load_train_config


def test_defaults_load_without_a_file() -> None:
    config = load_train_config(None)
    assert config.model.window_len % 8 == 0
    assert 0 < config.score.false_alarm_budget < 0.5


def test_repository_sample_config_is_valid() -> None:
    sample = Path(__file__).resolve().parents[2] / "configs" / "trainer.yaml"
    assert load_train_config(sample) == load_train_config(None)


def test_unknown_key_is_rejected_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("fit:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:2: fit\.epoch: Extra inputs"):
        load_train_config(path)


def test_window_must_be_a_multiple_of_eight(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  window_len: 50\n")
    with pytest.raises(ConfigError, match="multiple of 8"):
        load_train_config(path)


def test_unset_flags_without_a_file_keep_the_defaults() -> None:
    config = load_train_config(None, {"fit": {"epochs": None, "seed": None}, "data": {"columns": None}})
    assert config == load_train_config(None)


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("fit:\n  epochs: 3\n  seed: 4\n")
    config = load_train_config(path, {"fit": {"epochs": 9, "seed": None}})
    assert config.fit.epochs == 9 and config.fit.seed == 4


def test_severity_levels_are_checked() -> None:
    assert ScoreConfig().severity_levels == {"warning": 1e-2, "critical": 1e-4}
    with pytest.raises(ValidationError, match="differ from false_alarm_budget"):
        ScoreConfig(severity_levels={"critical": 1e-3})
    with pytest.raises(ValidationError, match="lower-case"):
        ScoreConfig(severity_levels={"Critical!": 1e-4})
    with pytest.raises(ValidationError, match="the threshold's own level"):
        ScoreConfig(severity_levels={"alert": 1e-4})
