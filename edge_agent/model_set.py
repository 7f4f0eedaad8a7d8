"""The models an agent serves, by name, and how one is swapped for another without a restart.

A reload loads, verifies and warms the new bundle before anything changes: on any failure the serving model
keeps serving and the result says why. Devices' windows and open alerts carry over when shapes allow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config import DEFAULT_MODEL, AgentConfig
from edge_agent.device_health import reference_score
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.pipeline import ScoringPipeline
from edge_agent.routing import model_for
from edge_agent.stats import Stats

log = logging.getLogger(__name__)

OpenModel = Callable[[Path], ScoringPipeline]  # a verified, warmed-up pipeline for a bundle path


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """Whether a swap happened, and the words for the log and the command response."""

    ok: bool
    detail: str


class ModelSet:
    """Name -> pipeline, with each model's current and previous bundle (what `rollback` returns to)."""

    def __init__(
        self, config: AgentConfig, default: ScoringPipeline, open_model: OpenModel | None, stats: Stats
    ) -> None:
        self.config, self.open_model, self.stats = config, open_model, stats
        self._models: dict[str, ScoringPipeline] = {DEFAULT_MODEL: default}
        if config.bundles and open_model is None:
            raise ConfigError("bundles: more models need a model loader")
        for name, path in config.bundles.items():
            self._models[name] = open_model(path)  # type: ignore[misc]
        self.references = {name: reference_score(m.threshold_details) for name, m in self._models.items()}
        self._current: dict[str, Path | None] = {DEFAULT_MODEL: config.bundle, **config.bundles}
        self._previous: dict[str, Path] = {}

    def __getitem__(self, name: str) -> ScoringPipeline:
        return self._models[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def __len__(self) -> int:
        return len(self._models)

    def values(self) -> list[ScoringPipeline]:
        """Every serving pipeline."""
        return list(self._models.values())

    def items(self) -> list[tuple[str, ScoringPipeline]]:
        """(name, pipeline) pairs."""
        return list(self._models.items())

    @property
    def default(self) -> ScoringPipeline:
        """The model `bundle` names."""
        return self._models[DEFAULT_MODEL]

    def for_device(self, device: str) -> ScoringPipeline:
        """The pipeline that scores `device` (the first matching route)."""
        return self._models[model_for(self.config.routes, device)]

    def forget(self, device: str) -> None:
        """Drop a device's windows and decisions in every model."""
        for model in self._models.values():
            model.forget(device)

    def set_threshold_override(self, device: str, value: float | None) -> None:
        """A per-device threshold in every model's decider (None: back to the bundle's)."""
        for model in self._models.values():
            model.decider.set_override(device, value)

    def configured_bundle(self, model: str) -> Path | None:
        """The path the config names for `model`."""
        return self.config.bundle if model == DEFAULT_MODEL else self.config.bundles.get(model)

    def rollback_target(self, model: str) -> Path | None:
        """The bundle `model` served before its last swap, if it was swapped."""
        return self._previous.get(model)

    def allowed_bundle(self, given: str) -> Path | None:
        """`given` resolved, if it lies under an allowed bundle folder (bundle_roots, else the folders holding
        the configured bundles); None otherwise, so the refusal reads the same whether or not it exists."""
        resolved = Path(given).resolve()
        if any(resolved == root or root in resolved.parents for root in self.allowed_roots()):
            return resolved
        return None

    def allowed_roots(self) -> list[Path]:
        """Where a reload may load from."""
        if self.config.bundle_roots:
            return [root.resolve() for root in self.config.bundle_roots]
        configured = [self.config.bundle, *self.config.bundles.values()]
        return sorted({path.resolve().parent for path in configured if path is not None})

    def reload(self, bundle: Path | None, model: str = DEFAULT_MODEL, force: bool = False) -> ReloadResult:
        """Load, verify and warm up `bundle`; swap it in for `model` only if all of that worked. `force`
        accepts a bundle whose channels differ from the serving one's."""
        if self.open_model is None or bundle is None:
            log.error("reload asked but no bundle path or loader is configured")
            return ReloadResult(False, "no bundle path or loader is configured")
        previous = self._models[model]
        try:
            fresh = self.open_model(bundle)
        except EdgeAgentError as err:
            return self._refused(f"{err}; {previous.bundle_id} keeps serving", str(err))
        if fresh.channels != previous.channels and not force:
            fresh.scorer.close()
            reason = (
                f"{bundle} reads channels {', '.join(fresh.channels)}, {previous.bundle_id} reads "
                f'{", ".join(previous.channels)}: devices would be refused or misread; send "force": true '
                "to swap anyway"
            )
            return self._refused(reason, reason)
        kept = fresh.adopt_state(previous)
        self._models[model] = fresh
        previous.scorer.close()
        self.references[model] = reference_score(fresh.threshold_details)
        current = self._current.get(model)
        if current is not None:
            self._previous[model] = current
        self._current[model] = bundle
        self.stats.reloads_ok += 1
        log.info(
            "model swapped: %s -> %s (device state %s)",
            previous.bundle_id,
            fresh.bundle_id,
            "kept" if kept else "reset: shapes differ",
        )
        return ReloadResult(True, f"serving {fresh.bundle_id}")

    def _refused(self, detail: str, error: str) -> ReloadResult:
        self.stats.reloads_failed += 1
        self.stats.last_reload_error = error
        log.error("reload refused: %s", detail)
        return ReloadResult(False, detail)
