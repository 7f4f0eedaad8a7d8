"""YAML config files into pydantic models, with errors that name the file, line and key.

Shared by the agent's and the trainer's configs so both read, merge and report the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from edge_agent.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


def load_yaml_model(
    model: type[ModelT], path: Path | None, overrides: dict[str, object] | None = None
) -> ModelT:
    """The file (optional) first, then `overrides` merged key by key; None values never override."""
    raw, text = _read_mapping(path) if path is not None else ({}, "")
    merged = _merge(raw, overrides or {})
    try:
        return model.model_validate(merged)
    except ValidationError as err:
        first = err.errors()[0]
        keys = [str(part) for part in first["loc"]]
        line = _line_of(text, keys)
        source = "" if path is None else (f"{path}:{line}: " if line else f"{path}: ")
        raise ConfigError(f"{source}{'.'.join(keys)}: {first['msg']}") from None


def _read_mapping(path: Path) -> tuple[dict[str, object], str]:
    try:
        text = path.read_text(encoding="utf-8")
        loaded = yaml.safe_load(text)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return dict(loaded or {}), text


def _merge(base: dict[str, object], overrides: dict[str, object]) -> dict[str, object]:
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        current = merged.get(key)
        if isinstance(value, dict):
            # Merge into the file's section (or an empty one) so None values inside are dropped too.
            merged[key] = _merge(current if isinstance(current, dict) else {}, value)
        else:
            merged[key] = value
    return merged


def _line_of(text: str, keys: list[str]) -> int | None:
    """Line of the deepest of `keys` present in the YAML text."""
    if not text:
        return None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == key), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line
