"""Telemetry in: route a message to its device and model, decode it strictly, admit the device (bounded by
ingest.max_devices) and queue its usable readings for scoring. Every refusal is counted under its Reason,
in the device's health, in the rejection log and (rate-limited) on the rejected topic; none stops the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from edge_agent.config import AgentConfig
from edge_agent.device_health import DeviceHealth
from edge_agent.model_set import ModelSet
from edge_agent.mqtt_link import RawMessage
from edge_agent.publisher import Publisher
from edge_agent.reasons import Reason
from edge_agent.rejection_log import RejectionLog
from edge_agent.routing import Router, model_for, owns
from edge_agent.sparkplug_topics import DATA as SPARKPLUG_DATA
from edge_agent.sparkplug_topics import DEATH as SPARKPLUG_DEATH
from edge_agent.sparkplug_topics import is_sparkplug
from edge_agent.sparkplug_topics import parse_topic as parse_sparkplug_topic
from edge_agent.stats import Stats
from edge_agent.telemetry import Decoded, PayloadError, Reading, TimeBounds, decode_message

if TYPE_CHECKING:
    from edge_agent.sparkplug import SparkplugState

log = logging.getLogger(__name__)

Batches = dict[str, list[Reading]]  # model name -> readings to score, in arrival order


class Ingest:
    """Owns the devices the agent tracks (when each was last heard), their health and their refusals."""

    def __init__(
        self,
        config: AgentConfig,
        models: ModelSet,
        publisher: Publisher,
        stats: Stats,
        clock: Callable[[], float],
    ) -> None:
        self.config, self.models, self.publisher, self.stats, self.clock = (
            config,
            models,
            publisher,
            stats,
            clock,
        )
        self.router = Router(config)
        self._bounds = TimeBounds(config.ingest.max_age_s, config.ingest.max_future_s)
        self.last_heard: dict[str, float] = {}  # every device with state, bounded by ingest.max_devices
        # Bounded like the window store: only admitted devices get health state, so a flood of new or
        # garbage-sending ids (refused, never evicted since never admitted) cannot grow it.
        self.health = DeviceHealth(config.ingest.max_devices)
        self.rejections = RejectionLog(config.stats.rejected_summary_s)
        self.sparkplug = _sparkplug_state(config, models, self._bounds) if config.sparkplug.enabled else None
        self.gone: list[str] = []  # devices a Sparkplug death took offline, for the loop to publish

    def take(self, raw: RawMessage, batches: Batches) -> str | None:
        """Queue `raw`'s usable readings into `batches`; the device when it showed signs of life (usable
        readings, admitted), else None."""
        if self.sparkplug is not None and is_sparkplug(raw.topic):
            return self._take_sparkplug(raw, batches)
        device, owned, model, valid_id = self.router.route(raw.topic)
        if not owned:
            self.stats.other_shards += 1
            return None
        self.stats.received += 1
        # Health counts readings (a message refused whole counts as one), for admitted devices only;
        # a device's first message is counted once it is admitted.
        tracked = device if valid_id and device in self.last_heard else None
        try:
            decoded = self._decode(raw, device, model)
        except PayloadError as err:
            if tracked is not None:
                self.health.received(tracked)
            self.reject(raw.topic, err.reason, err.detail, device)
            return None
        return self._queue(raw, device, model, tracked, decoded, batches)

    def _take_sparkplug(self, raw: RawMessage, batches: Batches) -> str | None:
        """A Sparkplug message: births and deaths update the state (deaths queue devices in `gone`), data
        are queued like a JSON batch, and data the agent cannot place ask the node for a rebirth."""
        assert self.sparkplug is not None
        where = parse_sparkplug_topic(raw.topic)
        if where is None:
            return None  # another Sparkplug message type (NCMD, STATE): not telemetry
        device = None
        try:
            if where.kind != SPARKPLUG_DEATH:
                device = self.sparkplug.device_id(where)
        except PayloadError as err:
            self.stats.received += 1
            self.reject(raw.topic, err.reason, err.detail)
            return None
        if where.kind == SPARKPLUG_DATA and device is not None and not owns(self.config.shard, device):
            self.stats.other_shards += 1
            return None
        self.stats.received += 1
        try:
            if device is None:  # a death
                outcome = self.sparkplug.take(where, raw.payload, raw.received_ts)
            else:
                outcome = self.sparkplug.take_for(where, device, raw.payload, raw.received_ts)
        except PayloadError as err:
            if device is not None and device in self.last_heard:
                self.health.received(device)
            self.reject(raw.topic, err.reason, err.detail, device)
            return None
        if outcome.stale_death:
            self.stats.sparkplug["stale_deaths"] += 1
            log.info("Sparkplug %s: the will of an earlier session (bdSeq); the node stays online", raw.topic)
        if outcome.seq_gap is not None:
            self.stats.sparkplug["seq_gaps"] += 1
            expected, received = outcome.seq_gap
            log.info(
                "Sparkplug %s: seq %d where %d was next: a message was lost", raw.topic, received, expected
            )
        if outcome.rebirth is not None:
            group, node = outcome.rebirth
            self.stats.sparkplug["rebirth_requests"] += 1
            log.info("Sparkplug node %s/%s: missed or unplaceable data; asking it to rebirth", group, node)
            from edge_agent.sparkplug import rebirth_request  # loaded with the state (_sparkplug_state)

            self.publisher.to_node(*rebirth_request(group, node, self.clock()))
        self.gone.extend(outcome.offline)
        if outcome.decoded is None or device is None:
            return None
        tracked = device if device in self.last_heard else None
        return self._queue(
            raw, device, model_for(self.config.routes, device), tracked, outcome.decoded, batches
        )

    def _queue(
        self,
        raw: RawMessage,
        device: str | None,
        model: str,
        tracked: str | None,
        decoded: Decoded,
        batches: Batches,
    ) -> str | None:
        """Admit the device, queue its usable readings and record the message's refusals."""
        in_message = len(decoded.readings) + len(decoded.refused)
        if tracked is not None:
            self.health.received(tracked, in_message)
        alive = None
        if decoded.readings and self._admit(raw.topic, decoded.readings[0].device, model, in_message):
            alive = decoded.readings[0].device
            self.last_heard[alive] = raw.received_ts
            batches.setdefault(model, []).extend(decoded.readings)
        for refusal in decoded.refused:  # after admission, so a new device's refusals count in its health
            where = "" if refusal.index is None else f"reading {refusal.index}: "
            self.reject(raw.topic, refusal.error.reason, where + refusal.error.detail, device)
        return alive

    def reject(self, where: str, reason: Reason, detail: str, device: str | None = None) -> None:
        """Count, log and announce one refusal."""
        self.stats.rejected[reason] += 1
        if device is not None:
            self.health.rejected(device, reason)
        log.debug("rejected %s: %s (%s)", where, reason, detail)
        now = self.clock()
        self.rejections.record(device, reason, detail, now)
        self.publisher.rejected(where, reason, detail, now)

    def silent(self, now: float, keep: Callable[[str], bool]) -> list[str]:
        """Forget devices silent for ingest.forget_after_s, except those `keep` names; returns them."""
        cutoff = now - self.config.ingest.forget_after_s
        silent = [d for d, heard in self.last_heard.items() if heard < cutoff and not keep(d)]
        for device in silent:
            del self.last_heard[device]
            self.health.forget(device)
            self.rejections.forget(device)
        return silent

    def _admit(self, topic: str, device: str, model: str, in_message: int) -> bool:
        """False (and rejected) for a new device past ingest.max_devices; a new device is told when its
        scoring starts, and its health starts with this message."""
        if device in self.last_heard:
            return True
        limit = self.config.ingest.max_devices
        if len(self.last_heard) >= limit:
            self.reject(topic, Reason.DEVICE_LIMIT, f"already keeping state for {limit} devices", device)
            return False
        window = self.models[model].windows.window_len
        log.info("device %s: first reading; scoring starts once %d readings fill a window", device, window)
        self.health.received(device, in_message)
        return True

    def _decode(self, raw: RawMessage, device: str | None, model: str) -> Decoded:
        if device is None:
            detail = f"topic {raw.topic[:80]!r} does not match the telemetry filter"
            raise PayloadError(Reason.BAD_DEVICE, detail)
        ingest = self.config.ingest
        return decode_message(
            raw.payload,
            device,
            self.models[model].channels,
            raw.received_ts,
            ingest.max_payload_bytes,
            ingest.max_readings_per_message,
            self._bounds,
        )


def _sparkplug_state(config: AgentConfig, models: ModelSet, bounds: TimeBounds) -> SparkplugState:
    """The Sparkplug decoder, imported here: the protobuf runtime and the payload classes cost about 4 MB,
    which an agent without `sparkplug.enabled` does not load."""
    from edge_agent.sparkplug import SparkplugState

    return SparkplugState(
        config.sparkplug,
        lambda device: models[model_for(config.routes, device)].channels,
        bounds,
        config.ingest.max_payload_bytes,
        config.ingest.max_devices,
        check_seq=config.shard.count == 1 and config.topics.shared_group is None,
    )
