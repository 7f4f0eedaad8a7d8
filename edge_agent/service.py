"""The daemon: drain the inbox, decode, score in micro-batches, publish alerts, state and stats.

Bad input is counted under its reason and dropped; it never stops the loop. A failing backend or bundle is
fatal: the caller logs it and exits non-zero so systemd restarts us.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from edge_agent.availability import OFFLINE, ONLINE, DeviceAvailability
from edge_agent.bundle import ALERT_LEVEL
from edge_agent.config import DEFAULT_MODEL, AgentConfig
from edge_agent.device_health import DeviceHealth, reference_score
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.homeassistant import discovery_messages
from edge_agent.mqtt_link import MqttLink, RawMessage
from edge_agent.pipeline import Outcome, ScoringPipeline
from edge_agent.rejection_log import RejectionLog
from edge_agent.spool import Spool
from edge_agent.stats import Stats
from edge_agent.status_board import StatusBoard
from edge_agent.systemd_notify import SystemdNotifier
from edge_agent.telemetry import (
    BAD_DEVICE,
    DEVICE_ID,
    Decoded,
    PayloadError,
    Reading,
    TimeBounds,
    decode_message,
)

log = logging.getLogger(__name__)

DEVICE_LIMIT = "device_limit"
KNOWN_COMMANDS = ("reload", "rollback", "threshold", "mute", "unmute")
ROUTES_PER_DEVICE = 2  # the topic memo holds this many topics per device the agent may track
INTERNAL_ERROR = "internal_error"
OK, ERROR = "ok", "error"


class _Route(NamedTuple):
    """A telemetry topic's device, whether this shard scores it, its model, and whether the id is valid."""

    device: str | None
    owned: bool
    model: str
    valid_id: bool


class CommandError(EdgeAgentError):
    """A command that cannot be carried out; its message goes back in the response."""


_HEALTH_KEYS = ("latency_ms", "inbox_depth", "inbox_overflow", "spool")


class AgentService:
    """Wires a link, a pipeline and stats together."""

    def __init__(
        self,
        config: AgentConfig,
        pipeline: ScoringPipeline,
        link: MqttLink,
        open_model: Callable[[Path], ScoringPipeline] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.link, self.clock = config, link, clock
        self.open_model = open_model  # builds a verified, warmed-up pipeline for a bundle path (hot swap)
        self.models: dict[str, ScoringPipeline] = {DEFAULT_MODEL: pipeline}
        if config.bundles and open_model is None:
            raise ConfigError("bundles: more models need a model loader")
        for name, path in config.bundles.items():
            self.models[name] = open_model(path)  # type: ignore[misc]
        self._references = {name: reference_score(m.threshold_details) for name, m in self.models.items()}
        self.stats = Stats()
        self.systemd = SystemdNotifier()
        # (model, bundle, the command that asked or None): every request is carried out and answered once,
        # in arrival order, even when several arrive in one batch.
        self._reload_requests: list[tuple[str, Path | None, tuple[str, object] | None, bool]] = []
        self._current_bundle: dict[str, Path | None] = {DEFAULT_MODEL: config.bundle, **config.bundles}
        self._previous_bundle: dict[str, Path] = {}  # what `rollback` goes back to, per model
        self._muted: set[str] = set()
        self._open_alerts: dict[str, str] = {}
        self._routes: dict[str, _Route] = {}
        self._time_bounds = TimeBounds(config.ingest.max_age_s, config.ingest.max_future_s)
        self._last_heard: dict[str, float] = {}  # every device with state, bounded by ingest.max_devices
        self._next_eviction = 0.0
        self.evicted = 0
        offline_after = config.ingest.offline_after_s
        self.availability = DeviceAvailability(offline_after) if offline_after is not None else None
        self._next_availability_check = 0.0
        self._next_stats = 0.0
        self._rejected_budget = 1.0
        self._last_budget_ts = clock()
        # Bounded like the window store: only admitted devices get health state, so a flood of new or
        # garbage-sending ids (refused, never evicted since never admitted) cannot grow it.
        self.health = DeviceHealth(config.ingest.max_devices)
        self.rejections = RejectionLog(config.stats.rejected_summary_s)
        self.status_board = StatusBoard() if config.status_page.port is not None else None
        self.status_view: dict[str, object] | None = None  # the page's copy, refreshed by the loop
        self.status_port: int | None = None
        self._next_status = 0.0
        self._announced: set[str] = set()  # devices announced to Home Assistant
        ha = config.homeassistant
        self._ha_status_topic = ha.status_topic if ha.enabled else None  # looked up per message
        self._sessions_seen = 0  # link sessions already re-announced to
        spool = config.spool
        self.spool = (
            Spool(spool.path, spool.max_bytes, spool.max_age_s, spool.on_full, clock)
            if spool.path is not None
            else None
        )
        if self.spool is not None:
            link.on_acknowledged = self.spool.acknowledged

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set, then finish what is in the inbox."""
        stop_metrics = None
        stats = self.config.stats
        if stats.prometheus_port is not None:
            from edge_agent.metrics import serve_metrics

            stop_metrics = serve_metrics(stats.prometheus_port, stats.prometheus_address, self.snapshot)
        stop_page = None
        page = self.config.status_page
        if page.port is not None:
            from edge_agent.status_page import serve_status_page

            stop_page, self.status_port = serve_status_page(
                page.port, page.address, lambda: self.status_view, page.refresh_s
            )
        self.link.start()
        self.systemd.ready(f"serving {', '.join(m.bundle_id for m in self.models.values())}")
        while not stop.is_set():
            self.step()
            self.systemd.watchdog()  # fed by the scoring loop itself: a hung loop gets us restarted
        self.systemd.stopping()
        # Finish what had arrived when the stop came, not what keeps arriving: a live fleet would otherwise
        # hold the stop for as long as it publishes. Anything later stays unacknowledged and the broker
        # delivers it again to the next session.
        pending = self.link.inbox_depth()
        while pending > 0:
            handled = self.step()
            if not handled:
                break
            pending -= handled
        self.publish_stats()
        self.link.stop()
        if self.spool is not None:
            self.spool.close()
        if stop_metrics is not None:
            stop_metrics()
        if stop_page is not None:
            stop_page()
        self.systemd.close()

    @property
    def pipeline(self) -> ScoringPipeline:
        """The default model (the one `bundle` names)."""
        return self.models[DEFAULT_MODEL]

    def request_reload(
        self,
        bundle: Path | None = None,
        model: str = DEFAULT_MODEL,
        command: tuple[str, object] | None = None,
        force: bool = False,
    ) -> None:
        """Ask for a model swap at the next loop iteration (safe from signal handlers and other threads);
        `command` (name, id) is answered once the swap has run or been refused; `force` accepts a bundle
        whose channels differ from the serving one's."""
        self._reload_requests.append((model, bundle or self._configured_bundle(model), command, force))

    def request_reload_all(self) -> None:
        """SIGHUP: reload every model from its configured path."""
        for model in self.models:
            self.request_reload(None, model)

    def _configured_bundle(self, model: str) -> Path | None:
        return self.config.bundle if model == DEFAULT_MODEL else self.config.bundles.get(model)

    def step(self) -> int:
        """One loop iteration; returns how many messages it handled."""
        while self._reload_requests:
            model, target, command, force = self._reload_requests.pop(0)
            self._reload(target, model, command, force)
        ingest = self.config.ingest
        raws = self.link.drain(ingest.batch_max, ingest.batch_wait_s)
        if raws:
            try:
                self._handle(raws)
            except EdgeAgentError:
                raise  # a failing backend or model: fatal, systemd restarts us
            except Exception:
                # A bug met by some input must not stop the daemon, nor come back forever as a redelivery.
                log.exception("internal error on a batch of %d messages; acknowledged and skipped", len(raws))
                self.stats.rejected[INTERNAL_ERROR] += len(raws)
                for raw in raws:
                    self.link.ack(raw)
        self._keep_connection_state()
        now = self.clock()
        if self.availability is not None and now >= self._next_availability_check:
            for device in self.availability.expired(now):
                self._publish_availability(device, OFFLINE)
            self._next_availability_check = now + min(1.0, self.availability.offline_after_s / 4)
        if now >= self._next_eviction:
            self._evict_silent(now)
            self._next_eviction = now + min(60.0, self.config.ingest.forget_after_s / 4)
        self.rejections.tick(now)
        if self.status_board is not None and now >= self._next_status:
            self.status_view = self._status_view(now)
            self._next_status = now + 1.0
        if now >= self._next_stats:
            self.publish_stats()
            self._next_stats = now + self.config.stats.interval_s
        return len(raws)

    def _keep_connection_state(self) -> None:
        """Re-announce after a (re)connect, send what the spool holds, and forget what the broker has."""
        if self.link.connected.is_set():
            if self.link.sessions != self._sessions_seen:
                self._sessions_seen = self.link.sessions
                self._new_session()
            elif self.spool is not None and self.spool.waiting():
                self._flush_spool()
        if self.spool is not None:
            self._spool_do(self.spool.settle)

    def _handle(self, raws: list[RawMessage]) -> None:
        batches: dict[str, list[Reading]] = {}
        for raw in raws:
            command = self.link.is_command(raw.topic)
            if command is not None:
                self._command(command, raw)
                continue
            if raw.topic == self._ha_status_topic:
                self._home_assistant_status(raw.payload)
                continue
            device, owned, model, valid_id = self._route(raw.topic)
            if not owned:
                self.stats.other_shards += 1
                continue
            self.stats.received += 1
            # Health counts readings (a message refused whole counts as one), for admitted devices only;
            # a device's first message is counted once `_take` admits it.
            tracked = device if valid_id and device in self._last_heard else None
            try:
                decoded = self._decode(raw, device, self.models[model])
            except PayloadError as err:
                if tracked is not None:
                    self.health.received(tracked)
                self._reject(raw.topic, err.reason, err.detail, device)
                continue
            in_message = len(decoded.readings) + len(decoded.refused)
            if tracked is not None:
                self.health.received(tracked, in_message)
            if decoded.readings:
                self._take(raw, model, decoded.readings, batches, in_message)
            for refusal in decoded.refused:  # after `_take`, so a new device's refusals count in its health
                where = "" if refusal.index is None else f"reading {refusal.index}: "
                self._reject(raw.topic, refusal.error.reason, where + refusal.error.detail, device)
        for model, readings in batches.items():
            self._score(model, readings)
        for raw in raws:
            self.link.ack(raw)  # only now: a crash before this point gets the readings redelivered

    def _take(
        self,
        raw: RawMessage,
        model: str,
        readings: list[Reading],
        batches: dict[str, list[Reading]],
        in_message: int,
    ) -> None:
        """A message's usable readings (one device): admitted, queued for scoring, signs of life.
        `in_message` counts every reading the message held, refused ones too (for a new device's health)."""
        device = readings[0].device
        if not self._admit(raw.topic, device, model):
            return
        if device not in self._last_heard:
            self.health.received(device, in_message)  # its first message: health starts with admission
        self._last_heard[device] = raw.received_ts
        batches.setdefault(model, []).extend(readings)
        if self._ha_status_topic is not None and device not in self._announced:
            self._announce(device)
        # Usable readings count as signs of life; a device sending only garbage stays offline.
        if self.availability is not None and self.availability.heard(device, raw.received_ts):
            self._publish_availability(device, ONLINE)

    def _score(self, model: str, readings: list[Reading]) -> None:
        pipeline, reference = self.models[model], self._references[model]
        outcomes, dropped = pipeline.push_many(readings)
        for item in dropped:
            self._reject(item.reading.device, item.reason, f"ts {item.reading.ts}", item.reading.device)
        now = self.clock()
        for outcome in outcomes:
            self.health.scored(outcome.reading.device, outcome.score, reference)
            self._publish_outcome(outcome, pipeline)
            self.stats.observe_latency(now - outcome.reading.received_ts)
        self.stats.scored += len(outcomes)

    def _admit(self, topic: str, device: str, model: str) -> bool:
        """False (and rejected) for a new device past ingest.max_devices; a new device is told when its
        scoring starts."""
        if device in self._last_heard:
            return True
        limit = self.config.ingest.max_devices
        if len(self._last_heard) >= limit:
            self._reject(topic, DEVICE_LIMIT, f"already keeping state for {limit} devices", device)
            return False
        window = self.models[model].windows.window_len
        log.info("device %s: first reading; scoring starts once %d readings fill a window", device, window)
        return True

    def _publish_availability(self, device: str, state: str) -> None:
        topic = self.config.topics.device_availability.format(device=device)
        self.link.publish(topic, state, qos=1, retain=True)

    def _evict_silent(self, now: float) -> None:
        """Forget devices silent for ingest.forget_after_s (none with an open alert): their windows, decision
        and health state, and their retained availability and state topics (cleared with empty payloads)."""
        cutoff = now - self.config.ingest.forget_after_s
        silent = [d for d, heard in self._last_heard.items() if heard < cutoff and d not in self._open_alerts]
        topics = self.config.topics
        for device in silent:
            del self._last_heard[device]
            for model in self.models.values():
                model.forget(device)
            self.health.forget(device)
            self.rejections.forget(device)
            if self.status_board is not None:
                self.status_board.forget(device)
            self._announced.discard(device)
            if self.availability is not None:
                self.availability.forget(device)
                self.link.publish(topics.device_availability.format(device=device), b"", qos=1, retain=True)
            self.link.publish(topics.state.format(device=device), b"", qos=1, retain=True)
        if silent:
            self.evicted += len(silent)
            log.info(
                "forgot %d devices silent for %.0f s or more", len(silent), self.config.ingest.forget_after_s
            )

    def _new_session(self) -> None:
        """After each (re)connect: send what waited, then re-announce (brokers can lose retained ones)."""
        self._flush_spool()
        if self._ha_status_topic is not None:
            self._announce_all()
        elif self.availability is not None:
            for device, state in self.availability.states().items():
                self._publish_availability(device, state)

    def _home_assistant_status(self, payload: bytes) -> None:
        if payload.strip() == b"online":
            log.info("Home Assistant is online: re-announcing %d devices", len(self._announced))
            self._announce_all()

    def _flush_spool(self) -> None:
        spool = self.spool
        if spool is not None:
            self._spool_do(lambda: spool.flush(self.link.publish_tracked))

    def _spool_do(self, action: Callable[[], object]) -> None:
        """Spool housekeeping; a disk error is logged and counted, never fatal (retried on the next loop)."""
        try:
            action()
        except sqlite3.Error as err:
            self.stats.rejected["spool_error"] += 1
            log.error("spool: %s; retried on the next loop", err)

    def _announce(self, device: str) -> None:
        bundle_id = self.models[self.config.model_for(device)].bundle_id
        for topic, payload in discovery_messages(self.config, device, bundle_id):
            self.link.publish(topic, payload, qos=1, retain=True)
        self._announced.add(device)

    def _announce_all(self) -> None:
        """Discovery configs, then the retained states they point at, for every device announced."""
        availability = self.availability.states() if self.availability is not None else {}
        for device in sorted(self._announced):
            self._announce(device)
            if device in availability:
                self._publish_availability(device, availability[device])
            state_topic = self.config.topics.state.format(device=device)
            state = self.models[self.config.model_for(device)].decider.state_of(device)
            self.link.publish(state_topic, state, qos=1, retain=True)

    def _publish_reliably(
        self, topic: str, payload: str, retain: bool, coalesce_key: str | None = None
    ) -> None:
        """QoS 1 through the spool when one is configured (survives outages and restarts)."""
        if self.spool is not None:
            try:
                self.spool.submit(
                    topic,
                    payload.encode(),
                    1,
                    retain,
                    self.link.connected.is_set(),
                    self.link.publish_tracked,
                    coalesce_key,
                )
                return
            except sqlite3.Error as err:  # a full disk or a damaged file must not cost the alert
                self.stats.rejected["spool_error"] += 1
                log.error("spool failed (%s): %s sent without it", err, topic)
        self.link.publish(topic, payload, qos=1, retain=retain)

    def _route(self, topic: str) -> _Route:
        """Where a telemetry topic's messages go; memoised, since a fleet repeats its topics."""
        route = self._routes.get(topic)
        if route is None:
            device = self.config.topics.device_of(topic)
            if device is None:
                route = _Route(None, True, DEFAULT_MODEL, False)
            else:
                owned = self.config.shard.owns(device)
                route = _Route(
                    device, owned, self.config.model_for(device), bool(DEVICE_ID.fullmatch(device))
                )
            if len(self._routes) >= ROUTES_PER_DEVICE * self.config.ingest.max_devices:
                # Topics are attacker-chosen: the memo is bounded by the fleet the agent may track, so a
                # flood of new ids past ingest.max_devices cannot grow the agent's memory through it.
                self._routes.clear()
            self._routes[topic] = route
        return route

    def _command(self, name: str, raw: RawMessage) -> None:
        if raw.retain:
            # A retained command would fire again on every reconnect: never act on one.
            self.stats.rejected["retained_command"] += 1
            log.warning("ignored retained command %r", name)
            return
        if not raw.payload:
            return  # an empty message clears a retained one on the broker; it is not a command
        try:
            body = json.loads(raw.payload)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._respond(name, None, ERROR, "the payload must be a JSON object")
            return
        transaction = body.get("id")
        try:
            detail = self._execute(name, body, transaction)
        except CommandError as err:
            self._respond(name, transaction, ERROR, str(err))
            return
        if detail is not None:  # None: answered later (a reload answers once it has run)
            self._respond(name, transaction, OK, detail)

    def _execute(self, name: str, body: dict[str, object], transaction: object) -> str | None:
        """Carry out one command; the detail for an ok response, or None when the answer comes later."""
        if name not in KNOWN_COMMANDS:
            self.stats.rejected["unknown_command"] += 1
            raise CommandError(f"unknown command {name!r}; known: {', '.join(KNOWN_COMMANDS)}")
        if name in ("reload", "rollback"):
            model = body.get("model", DEFAULT_MODEL)
            if not isinstance(model, str) or model not in self.models:
                raise CommandError(f"'model' must be one of: {', '.join(self.models)}")
            bundle: Path | None
            if name == "rollback":
                if model not in self._previous_bundle:
                    raise CommandError(f"nothing to roll back to: no bundle was swapped into {model!r}")
                bundle = self._previous_bundle[model]
            else:
                given = body.get("bundle")
                if given is not None and not isinstance(given, str):
                    raise CommandError("'bundle' must be a path")
                bundle = self._allowed_bundle(given) if given else self._configured_bundle(model)
            self.request_reload(bundle, model, (name, transaction), body.get("force") is True)
            return None
        device = body.get("device")
        if not isinstance(device, str) or not DEVICE_ID.fullmatch(device):
            raise CommandError(f"'device' must be a device id matching {DEVICE_ID.pattern}")
        if name == "threshold":
            value = body.get("value")
            overrides = self.config.decision.threshold_overrides  # shared by every pipeline loaded
            if value is None:
                overrides.pop(device, None)
                return f"{device}: back to the bundle's threshold"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise CommandError("'value' must be a positive number, or null to clear the override")
            overrides[device] = float(value)
            return f"{device}: threshold {float(value)}"
        if name == "mute":
            self._muted.add(device)
            return f"{device}: alerts muted"
        self._muted.discard(device)  # unmute: the last of KNOWN_COMMANDS
        return f"{device}: alerts unmuted"

    def _allowed_bundle(self, given: str) -> Path:
        """The path a reload names, if it lies under an allowed bundle folder; otherwise refused with the
        same words whether or not it exists."""
        roots = self.config.allowed_bundle_roots()
        resolved = Path(given).resolve()
        if not any(resolved == root or root in resolved.parents for root in roots):
            raise CommandError(
                f"bundle path not allowed: reloads load from {', '.join(str(r) for r in roots) or 'nowhere'} "
                "(bundle_roots in the config)"
            )
        return resolved

    def _respond(self, name: str, transaction: object, status: str, detail: str) -> None:
        topic = self.config.topics.command_response.format(agent_id=self.config.agent_id, command=name)
        payload = {"id": transaction, "command": name, "status": status, "detail": detail, "ts": self.clock()}
        self.link.publish(topic, json.dumps(payload), qos=1)

    def _reload(
        self,
        bundle: Path | None,
        model: str = DEFAULT_MODEL,
        command: tuple[str, object] | None = None,
        force: bool = False,
    ) -> None:
        """Load, verify and warm up the new model; swap only if all of that worked."""
        if self.open_model is None or bundle is None:
            log.error("reload asked but no bundle path or loader is configured")
            if command is not None:
                self._respond(command[0], command[1], ERROR, "no bundle path or loader is configured")
            return
        try:
            fresh = self.open_model(bundle)
        except EdgeAgentError as err:
            self.stats.reloads_failed += 1
            self.stats.last_reload_error = str(err)
            serving = self.models[model].bundle_id
            log.error("reload of %s refused, %s keeps serving: %s", bundle, serving, err)
            if command is not None:
                self._respond(command[0], command[1], ERROR, f"{err}; {serving} keeps serving")
            return
        previous = self.models[model]
        if fresh.channels != previous.channels and not force:
            fresh.scorer.close()
            reason = (
                f"{bundle} reads channels {', '.join(fresh.channels)}, {previous.bundle_id} reads "
                f'{", ".join(previous.channels)}: devices would be refused or misread; send "force": true '
                "to swap anyway"
            )
            self.stats.reloads_failed += 1
            self.stats.last_reload_error = reason
            log.error("reload refused, %s keeps serving: %s", previous.bundle_id, reason)
            if command is not None:
                self._respond(command[0], command[1], ERROR, reason)
            return
        kept = fresh.adopt_state(previous)
        self.models[model] = fresh
        previous.scorer.close()
        self._references[model] = reference_score(fresh.threshold_details)
        current = self._current_bundle.get(model)
        if current is not None:
            self._previous_bundle[model] = current
        self._current_bundle[model] = bundle
        self.stats.reloads_ok += 1
        if command is not None:
            self._respond(command[0], command[1], OK, f"serving {fresh.bundle_id}")
        log.info(
            "model swapped: %s -> %s (device state %s)",
            previous.bundle_id,
            fresh.bundle_id,
            "kept" if kept else "reset: shapes differ",
        )

    def _decode(self, raw: RawMessage, device: str | None, pipeline: ScoringPipeline) -> Decoded:
        if device is None:
            raise PayloadError(BAD_DEVICE, f"topic {raw.topic[:80]!r} does not match the telemetry filter")
        ingest = self.config.ingest
        return decode_message(
            raw.payload,
            device,
            pipeline.channels,
            raw.received_ts,
            ingest.max_payload_bytes,
            ingest.max_readings_per_message,
            self._time_bounds,
        )

    def _reject(self, where: str, reason: str, detail: str, device: str | None = None) -> None:
        self.stats.rejected[reason] += 1
        if device is not None:
            self.health.rejected(device, reason)
        log.debug("rejected %s: %s (%s)", where, reason, detail)
        now = self.clock()
        self.rejections.record(device, reason, detail, now)
        rate = self.config.stats.rejected_per_s
        self._rejected_budget = min(rate, self._rejected_budget + (now - self._last_budget_ts) * rate)
        self._last_budget_ts = now
        if self._rejected_budget >= 1.0:
            self._rejected_budget -= 1.0
            topic = self.config.topics.rejected.format(agent_id=self.config.agent_id)
            payload = {"source": where, "reason": reason, "detail": detail[:200], "ts": now}
            self.link.publish(topic, json.dumps(payload), qos=0)

    def _publish_outcome(self, outcome: Outcome, pipeline: ScoringPipeline) -> None:
        decision = outcome.decision
        device = outcome.reading.device
        bundle_id = pipeline.bundle_id
        topics = self.config.topics
        if topics.score is not None:
            score = {
                "device": device,
                "ts": outcome.reading.ts,
                "seq": outcome.reading.seq,
                "score": round(outcome.score, 6),
                "threshold": round(decision.threshold, 6),
                "severity": pipeline.severity.of(outcome.score),
                "agent_id": self.config.agent_id,
            }
            self.link.publish(topics.score.format(device=device), json.dumps(score), qos=0)
        if self.status_board is not None:
            self.status_board.scored(device, outcome.reading.ts, outcome.score, decision.threshold)
        if decision.changed:
            state_topic = topics.state.format(device=device)
            self._publish_reliably(state_topic, decision.state, True, f"state:{device}")
        if decision.alert is None or device in self._muted:
            return
        if decision.alert == "start":
            self._open_alerts[device] = uuid.uuid4().hex
            self.stats.alerts += 1
        alert_id = self._open_alerts.get(device, uuid.uuid4().hex)
        if decision.alert == "end":
            self._open_alerts.pop(device, None)
        payload = {
            "alert_id": alert_id,
            "type": decision.alert,
            "device": device,
            "ts": outcome.reading.ts,
            "score": round(outcome.score, 6),
            "threshold": round(decision.threshold, 6),
            "severity": pipeline.severity.of(decision.peak) or ALERT_LEVEL,
            "peak_score": round(decision.peak, 6),
            "top_channels": [{"channel": c, "contribution": v} for c, v in outcome.top_channels()],
            "bundle_id": bundle_id,
            "agent_id": self.config.agent_id,
        }
        self._publish_reliably(topics.alert.format(device=device), json.dumps(payload), False)
        if self.status_board is not None:
            self.status_board.alert(payload)
        top = ", ".join(f"{c} {v:.3g}" for c, v in outcome.top_channels())
        log.info(
            "alert %s %s: %s score %.4g (threshold %.4g, peak %.4g), top channels %s",
            decision.alert,
            device,
            payload["severity"],
            outcome.score,
            decision.threshold,
            decision.peak,
            top,
        )

    def publish_stats(self) -> None:
        """The periodic stats message."""
        topic = self.config.topics.agent_stats.format(agent_id=self.config.agent_id)
        self.link.publish(topic, json.dumps(self.snapshot()), qos=0)
        stats = self.stats
        self.systemd.status(
            f"{'connected' if self.link.connected.is_set() else 'reconnecting'}; bundle "
            f"{self.pipeline.bundle_id}; received {stats.received}, scored {stats.scored}, "
            f"alerts {stats.alerts}, rejected {sum(stats.rejected.values())}"
        )

    def _status_view(self, now: float) -> dict[str, object]:
        """What the status page shows, copied from the agent's own state on the agent's thread."""
        assert self.status_board is not None
        stats = self.snapshot()
        board = self.status_board.snapshot()
        traces: dict[str, dict[str, object]] = board["devices"]  # type: ignore[assignment]
        online = self.availability.online_now() if self.availability is not None else None
        devices = [
            {"name": name, "online": None if online is None else name in online, **trace}
            for name, trace in traces.items()
        ]
        return {
            "agent_id": self.config.agent_id,
            "ts": now,
            "connected": self.link.connected.is_set(),
            "bundle": {
                "id": self.pipeline.bundle_id,
                "thresholds": {name: model.threshold.value for name, model in self.models.items()},
            },
            "counters": {key: stats[key] for key in ("received", "scored", "alerts", "devices")},
            "rejected": stats["rejected"],
            "devices": devices,
            "recent_alerts": board["recent_alerts"],
            "health": {
                key: stats[key]
                for key in ("latency_ms", "inbox_depth", "inbox_overflow", "spool")
                if key in stats
            },
        }

    def snapshot(self) -> dict[str, object]:
        """Counters for the stats topic and the Prometheus endpoint."""
        extra: dict[str, object] = {
            "inbox_overflow": self.link.inbox_overflow,
            "inbox_depth": self.link.inbox_depth(),
            "bundle_id": self.pipeline.bundle_id,
            "bundles": {name: model.bundle_id for name, model in self.models.items()},
            "devices": sum(len(model.windows) for model in self.models.values()),
            "devices_tracked": len(self._last_heard),
            "devices_evicted": self.evicted,
            "device_health": self.health.snapshot(self.config.stats.max_devices_reported),
            "ts": self.clock(),
        }
        if self.spool is not None:
            extra["spool"] = self.spool.snapshot()
        return self.stats.snapshot(extra)
