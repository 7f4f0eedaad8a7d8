"""Commands on edgegan/agent/<id>/cmd/<name>: parsed and checked here, answered by the caller.

A command either is carried out at once (threshold, mute, unmute) and answered, or becomes a reload request
that the loop carries out between batches and answers with the reload's result. Retained commands are
never acted on: they would fire again on every reconnect.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edge_agent.alerting import AlertPublisher
from edge_agent.config import DEFAULT_MODEL
from edge_agent.errors import EdgeAgentError
from edge_agent.model_set import ModelSet
from edge_agent.mqtt_link import RawMessage
from edge_agent.publisher import ERROR, OK, CommandResponse
from edge_agent.reasons import Reason
from edge_agent.stats import Stats
from edge_agent.telemetry import DEVICE_ID

log = logging.getLogger(__name__)

KNOWN_COMMANDS = ("reload", "rollback", "threshold", "mute", "unmute")


class CommandError(EdgeAgentError):
    """A command that cannot be carried out; its message goes back in the response."""


@dataclass(frozen=True, slots=True)
class ReloadRequest:
    """A model swap to run between batches; `command` (name, id) is answered with its result."""

    model: str
    bundle: Path | None
    command: tuple[str, object] | None = None
    force: bool = False  # accept a bundle whose channels differ from the serving one's


class Commands:
    """Carries out the agent's commands against its models and alert publisher."""

    def __init__(self, models: ModelSet, alerts: AlertPublisher, stats: Stats) -> None:
        self.models, self.alerts, self.stats = models, alerts, stats

    def handle(self, name: str, raw: RawMessage) -> CommandResponse | ReloadRequest | None:
        """The response to publish now, a reload to run (answered once it has), or None (nothing to say)."""
        if raw.retain:
            self.stats.rejected[Reason.RETAINED_COMMAND] += 1
            log.warning("ignored retained command %r", name)
            return None
        if not raw.payload:
            return None  # an empty message clears a retained one on the broker; it is not a command
        try:
            body = json.loads(raw.payload)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return CommandResponse(name, None, ERROR, "the payload must be a JSON object")
        transaction = body.get("id")
        try:
            if name in ("reload", "rollback"):
                return self._reload(name, body, transaction)
            return CommandResponse(name, transaction, OK, self._execute(name, body))
        except CommandError as err:
            return CommandResponse(name, transaction, ERROR, str(err))

    def _reload(self, name: str, body: dict[str, object], transaction: object) -> ReloadRequest:
        model = body.get("model", DEFAULT_MODEL)
        if not isinstance(model, str) or model not in self.models:
            raise CommandError(f"'model' must be one of: {', '.join(self.models)}")
        bundle: Path | None
        if name == "rollback":
            bundle = self.models.rollback_target(model)
            if bundle is None:
                raise CommandError(f"nothing to roll back to: no bundle was swapped into {model!r}")
        else:
            given = body.get("bundle")
            if given is not None and not isinstance(given, str):
                raise CommandError("'bundle' must be a path")
            bundle = self._allowed(given) if given else self.models.configured_bundle(model)
        return ReloadRequest(model, bundle, (name, transaction), body.get("force") is True)

    def _allowed(self, given: str) -> Path:
        bundle = self.models.allowed_bundle(given)
        if bundle is None:
            roots = ", ".join(str(r) for r in self.models.allowed_roots()) or "nowhere"
            raise CommandError(
                f"bundle path not allowed: reloads load from {roots} (bundle_roots in the config)"
            )
        return bundle

    def _execute(self, name: str, body: dict[str, object]) -> str:
        """Carry out a device command; the detail of its ok response."""
        if name not in KNOWN_COMMANDS:
            self.stats.rejected[Reason.UNKNOWN_COMMAND] += 1
            raise CommandError(f"unknown command {name!r}; known: {', '.join(KNOWN_COMMANDS)}")
        device = body.get("device")
        if not isinstance(device, str) or not DEVICE_ID.fullmatch(device):
            raise CommandError(f"'device' must be a device id matching {DEVICE_ID.pattern}")
        if name == "threshold":
            value = body.get("value")
            if value is None:
                self.models.set_threshold_override(device, None)
                return f"{device}: back to the bundle's threshold"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise CommandError("'value' must be a positive number, or null to clear the override")
            self.models.set_threshold_override(device, float(value))
            return f"{device}: threshold {float(value)}"
        if name == "mute":
            self.alerts.muted.add(device)
            return f"{device}: alerts muted"
        self.alerts.muted.discard(device)  # unmute: the last of KNOWN_COMMANDS
        return f"{device}: alerts unmuted"
