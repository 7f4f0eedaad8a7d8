"""The daemon's loop: drain the inbox, hand telemetry to ingest and commands to their handler, score in
micro-batches, publish, and keep the connection's and the fleet's housekeeping. `build_agent` wires it
from a config, for the CLI and the tests alike.

The parts, each with one job: routing and decoding (ingest.py), the models and their hot swap
(model_set.py), commands (commands.py), alert and state messages (alerting.py) and everything sent
(publisher.py). Bad input is counted under its reason and dropped; it never stops the loop. A failing
backend or bundle is fatal: the caller logs it and exits non-zero so systemd restarts us.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from edge_agent.alerting import AlertPublisher
from edge_agent.availability import OFFLINE, ONLINE, DeviceAvailability
from edge_agent.commands import Commands, ReloadRequest
from edge_agent.config import DEFAULT_MODEL, AgentConfig
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.homeassistant import Announcer
from edge_agent.ingest import Batches, Ingest
from edge_agent.model_set import ModelSet, OpenModel
from edge_agent.mqtt_link import MqttLink, RawMessage, open_link
from edge_agent.pipeline import ScoringPipeline, open_pipeline
from edge_agent.publisher import ERROR, OK, CommandResponse, Publisher
from edge_agent.reasons import Reason
from edge_agent.sparkplug_host import HostState
from edge_agent.stats import Stats
from edge_agent.status_board import StatusBoard, page_view
from edge_agent.systemd_notify import SystemdNotifier
from edge_agent.telemetry import Reading

log = logging.getLogger(__name__)


def build_agent(config: AgentConfig, link: MqttLink | None = None) -> AgentService:
    """The daemon for `config`: its link (unless given), every configured model loaded and verified."""
    if config.bundle is None:
        raise ConfigError("no bundle: set bundle in the config or pass --bundle")

    def open_model(bundle: Path) -> ScoringPipeline:
        return open_pipeline(bundle, config.backend, config.decision, config.ingest, config.trusted_keys)

    return AgentService(config, open_model(config.bundle), link or open_link(config), open_model)


def serve_endpoints(
    config: AgentConfig,
    snapshot: Callable[[], dict[str, object]],
    status_view: Callable[[], dict[str, object] | None],
) -> tuple[list[Callable[[], None]], int | None]:
    """The configured HTTP endpoints (Prometheus metrics, status page): their stop functions, and the page's
    port (it may be 0 in the config: the system picks one)."""
    stops: list[Callable[[], None]] = []
    port = None
    stats, page = config.stats, config.status_page
    if stats.prometheus_port is not None:
        from edge_agent.metrics import serve_metrics

        stops.append(serve_metrics(stats.prometheus_port, stats.prometheus_address, snapshot))
    if page.port is not None:
        from edge_agent.status_page import serve_status_page

        stop_page, port = serve_status_page(page.port, page.address, status_view, page.refresh_s)
        stops.append(stop_page)
    return stops, port


class AgentService:
    """The loop that drives ingest, scoring and publishing, and the fleet's housekeeping."""

    def __init__(
        self,
        config: AgentConfig,
        pipeline: ScoringPipeline,
        link: MqttLink,
        open_model: OpenModel | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.link, self.clock = config, link, clock
        self.stats = Stats()
        self.systemd = SystemdNotifier()
        self.models = ModelSet(config, pipeline, open_model, self.stats)
        self.publisher = Publisher(config, link, self.stats, clock)
        self.status_board = StatusBoard() if config.status_page.port is not None else None
        self.alerts = AlertPublisher(config, self.publisher, self.stats, self.status_board)
        self.ingest = Ingest(config, self.models, self.publisher, self.stats, clock)
        self.commands = Commands(self.models, self.alerts, self.stats)
        self._reloads: list[ReloadRequest] = []  # carried out and answered once each, in arrival order
        offline_after = config.ingest.offline_after_s
        if offline_after is None and config.sparkplug.enabled:
            offline_after = math.inf  # Sparkplug deaths still take devices offline
        self.availability = DeviceAvailability(offline_after) if offline_after is not None else None
        spb = config.sparkplug
        self.host_state = (
            HostState(config.broker, config.agent_id, spb.host_id) if spb.enabled and spb.host_id else None
        )
        self.evicted = 0
        self._next_availability_check = self._next_eviction = self._next_stats = self._next_status = 0.0
        self.status_view: dict[str, object] | None = None  # the page's copy, refreshed by the loop
        self.status_port: int | None = None
        ha = config.homeassistant
        self._ha_status_topic = ha.status_topic if ha.enabled else None  # looked up per message
        self.announcer = Announcer(config, self.publisher, self.models, self.availability)
        self._sessions_seen = 0  # link sessions already re-announced to

    @property
    def pipeline(self) -> ScoringPipeline:
        """The default model (the one `bundle` names)."""
        return self.models.default

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set, then finish what is in the inbox."""
        stop_servers, self.status_port = serve_endpoints(self.config, self.snapshot, lambda: self.status_view)
        self.link.start()
        if self.host_state is not None:
            self.host_state.start()
        self.systemd.ready(f"serving {', '.join(m.bundle_id for m in self.models.values())}")
        settle_heap()
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
        if self.host_state is not None:
            self.host_state.stop()  # nodes stop publishing before the agent stops taking
        self.link.stop()
        self.publisher.close()
        for stop_server in stop_servers:
            stop_server()
        self.systemd.close()

    def request_reload(
        self, bundle: Path | None = None, model: str = DEFAULT_MODEL, force: bool = False
    ) -> None:
        """Ask for a model swap at the next loop iteration (safe from signal handlers and other threads)."""
        self._reloads.append(
            ReloadRequest(model, bundle or self.models.configured_bundle(model), None, force)
        )

    def request_reload_all(self) -> None:
        """SIGHUP: reload every model from its configured path."""
        for model in self.models:
            self.request_reload(None, model)

    def step(self) -> int:
        """One loop iteration; returns how many messages it handled."""
        while self._reloads:
            self._reload(self._reloads.pop(0))
        ingest = self.config.ingest
        raws = self.link.drain(ingest.batch_max, ingest.batch_wait_s)
        self._announce_new_session()  # before the readings, which may already be from the new session
        if raws:
            try:
                self._handle(raws)
            except EdgeAgentError:
                raise  # a failing backend or model: fatal, systemd restarts us
            except Exception:
                # A bug met by some input must not stop the daemon, nor come back forever as a redelivery.
                log.exception("internal error on a batch of %d messages; acknowledged and skipped", len(raws))
                self.stats.rejected[Reason.INTERNAL_ERROR] += len(raws)
                for raw in raws:
                    self.link.ack(raw)
        self.publisher.keep_spool(flush=self.link.connected.is_set())
        self._housekeeping(self.clock())
        return len(raws)

    def _housekeeping(self, now: float) -> None:
        """Timed chores: offline devices, forgetting silent ones, the rejection summary, page and stats."""
        if self.availability is not None and now >= self._next_availability_check:
            for device in self.availability.expired(now):
                self.publisher.availability(device, OFFLINE)
            self._next_availability_check = now + min(1.0, self.availability.offline_after_s / 4)
        if now >= self._next_eviction:
            self._evict_silent(now)
            self._next_eviction = now + min(60.0, self.config.ingest.forget_after_s / 4)
        self.ingest.rejections.tick(now)
        if self.status_board is not None and now >= self._next_status:
            self.status_view = self._status_view(now)
            self._next_status = now + 1.0
        if now >= self._next_stats:
            self.publish_stats()
            self._next_stats = now + self.config.stats.interval_s

    def _announce_new_session(self) -> None:
        """Re-announce after a (re)connect, before the step handles its readings. Why before: the loop may
        first run after the broker confirmed the subscriptions, with readings of that session already
        drained; handled first, a device they bring online would be announced online twice."""
        if self.link.connected.is_set() and self.link.sessions != self._sessions_seen:
            self._sessions_seen = self.link.sessions
            self._new_session()

    def _handle(self, raws: list[RawMessage]) -> None:
        batches: Batches = {}
        for raw in raws:
            command = self.link.is_command(raw.topic)
            if command is not None:
                self._command(command, raw)
            elif raw.topic == self._ha_status_topic:
                self.announcer.on_status(raw.payload)
            else:
                alive = self.ingest.take(raw, batches)
                if alive is not None:
                    self._signs_of_life(alive, raw.received_ts)
                if self.ingest.gone:
                    self._gone(self.ingest.gone)
        for model, readings in batches.items():
            self._score(model, readings)
        for raw in raws:
            self.link.ack(raw)  # only now: a crash before this point gets the readings redelivered

    def _signs_of_life(self, device: str, received_ts: float) -> None:
        """Usable readings: announced to Home Assistant once, and online (a device sending only garbage
        stays offline)."""
        if self._ha_status_topic is not None:
            self.announcer.device_seen(device)
        if self.availability is not None and self.availability.heard(device, received_ts):
            self.publisher.availability(device, ONLINE)

    def _gone(self, devices: list[str]) -> None:
        """Devices whose Sparkplug death said they are gone: offline now, not after a silence."""
        for device in devices:
            if self.availability is not None and self.availability.went_offline(device):
                self.publisher.availability(device, OFFLINE)
        devices.clear()

    def _score(self, model: str, readings: list[Reading]) -> None:
        """Score a step's readings in chunks of SCORE_CHUNK, publishing each chunk's decisions before the
        next is scored: a backlog or a large batch then neither holds its first decisions back behind the
        whole step nor grows the backend's working memory with the step's size."""
        pipeline, reference = self.models[model], self.models.references[model]
        newest = _newest_of_each_message(readings) if self.config.topics.score_per == "message" else None
        for start in range(0, len(readings), SCORE_CHUNK):
            outcomes, dropped = pipeline.push_many(readings[start : start + SCORE_CHUNK])
            for item in dropped:
                device = item.reading.device
                self.ingest.reject(device, item.reason, f"ts {item.reading.ts}", device)
            now = self.clock()
            for outcome in outcomes:
                reading = outcome.reading
                self.ingest.health.scored(reading.device, outcome.score, reference)
                with_score = (
                    newest is None
                    or newest.get((reading.device, reading.received_ts), reading.ts) == reading.ts
                )
                self.alerts.publish(outcome, pipeline, with_score=with_score)
                self.stats.observe_latency(now - reading.received_ts)
            self.stats.scored += len(outcomes)

    def _command(self, name: str, raw: RawMessage) -> None:
        answer = self.commands.handle(name, raw)
        if isinstance(answer, ReloadRequest):
            self._reloads.append(answer)
        elif answer is not None:
            self.publisher.respond(answer)

    def _reload(self, request: ReloadRequest) -> None:
        result = self.models.reload(request.bundle, request.model, request.force)
        settle_heap()  # the old model's objects go, the new one's join the frozen heap
        if request.command is not None:
            name, transaction = request.command
            self.publisher.respond(
                CommandResponse(name, transaction, OK if result.ok else ERROR, result.detail)
            )

    def _evict_silent(self, now: float) -> None:
        """Forget devices silent for ingest.forget_after_s (none with an open alert): their windows, decision
        and health state, and their retained availability and state topics (cleared with empty payloads)."""
        silent = self.ingest.silent(now, keep=self.alerts.has_open_alert)
        for device in silent:
            self.models.forget(device)
            if self.status_board is not None:
                self.status_board.forget(device)
            self.announcer.forget(device)
            if self.availability is not None:
                self.availability.forget(device)
            self.publisher.clear_device(device, availability=self.availability is not None)
        if silent:
            self.evicted += len(silent)
            log.info(
                "forgot %d devices silent for %.0f s or more", len(silent), self.config.ingest.forget_after_s
            )

    def _new_session(self) -> None:
        """After each (re)connect: send what waited, then re-announce (brokers can lose retained ones)."""
        self.publisher.flush_spool()
        if self._ha_status_topic is not None:
            self.announcer.announce_all()
        elif self.availability is not None:
            for device, state in self.availability.states().items():
                self.publisher.availability(device, state)

    def publish_stats(self) -> None:
        """The periodic stats message."""
        self.publisher.stats_message(self.snapshot())
        stats = self.stats
        self.systemd.status(
            f"{'connected' if self.link.connected.is_set() else 'reconnecting'}; bundle "
            f"{self.pipeline.bundle_id}; received {stats.received}, scored {stats.scored}, "
            f"alerts {stats.alerts}, rejected {sum(stats.rejected.values())}"
        )

    def _status_view(self, now: float) -> dict[str, object]:
        """What the status page shows, copied from the agent's own state on the agent's thread."""
        assert self.status_board is not None
        online = self.availability.online_now() if self.availability is not None else None
        thresholds = {name: model.threshold.value for name, model in self.models.items()}
        return page_view(
            self.config.agent_id,
            now,
            self.link.connected.is_set(),
            self.snapshot(),
            self.status_board.snapshot(),
            online,
            thresholds,
        )

    def snapshot(self) -> dict[str, object]:
        """Counters for the stats topic and the Prometheus endpoint."""
        extra: dict[str, object] = {
            "inbox_overflow": self.link.inbox_overflow,
            "inbox_depth": self.link.inbox_depth(),
            "bundle_id": self.pipeline.bundle_id,
            "bundles": {name: model.bundle_id for name, model in self.models.items()},
            "devices": sum(len(model.windows) for model in self.models.values()),
            "devices_tracked": len(self.ingest.last_heard),
            "devices_evicted": self.evicted,
            "device_health": self.ingest.health.snapshot(self.config.stats.max_devices_reported),
            "ts": self.clock(),
        }
        if self.publisher.spool is not None:
            extra["spool"] = self.publisher.spool.snapshot()
        return self.stats.snapshot(extra)


def settle_heap() -> None:
    """Collect once, then move every live object to the permanent generation (gc.freeze), so that the
    loop's full collections walk only what the loop itself keeps. Why: a full collection walked every
    object of the imported libraries too, 14-25 ms here, about every 1.4 s when scoring 12,000 readings/s:
    the largest part of the agent's receive-to-decision p99 (benchmarks/README, "Batched latency")."""
    gc.unfreeze()
    with warnings.catch_warnings():
        # Whatever else left unclosed sockets or files to the collector (a library, an embedding program,
        # an earlier test) would warn here, from inside the agent's start: not the agent's to report.
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    gc.freeze()


# Readings per backend call: 3-5 ms of INT8 scoring on one core. 64 scores as fast per window as 128 and
# leaves ORT's arena smaller: the batched paced test read 103.2 MB against 105.2 (medians of 4 and 5 runs).
SCORE_CHUNK = 64


def _newest_of_each_message(readings: list[Reading]) -> dict[tuple[str, float], float]:
    """(device, arrival) -> the newest timestamp among that message's readings: the reading whose score
    `topics.score_per: message` publishes. A reading decided in a later step (held for order) is not
    found here and keeps its score message."""
    newest: dict[tuple[str, float], float] = {}
    for reading in readings:
        key = (reading.device, reading.received_ts)
        if reading.ts > newest.get(key, float("-inf")):
            newest[key] = reading.ts
    return newest
