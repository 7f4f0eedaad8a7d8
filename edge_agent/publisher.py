"""Everything the agent sends, and how: QoS 1 through the spool where one is configured (alerts and state
changes survive broker outages and agent restarts), retained availability and state, command responses,
rate-limited rejection notices and the stats message. A spool or disk error never costs a message.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.config import AgentConfig
from edge_agent.mqtt_link import MqttLink
from edge_agent.reasons import Reason
from edge_agent.spool import Spool
from edge_agent.stats import Stats

log = logging.getLogger(__name__)

OK, ERROR = "ok", "error"


@dataclass(frozen=True, slots=True)
class CommandResponse:
    """The answer to one command, as published on its response topic."""

    command: str
    id: object  # the request's "id", echoed so a caller can match answers to requests
    status: str  # OK or ERROR
    detail: str


class Publisher:
    """The agent's outbound side over one link (and its spool)."""

    def __init__(self, config: AgentConfig, link: MqttLink, stats: Stats, clock: Callable[[], float]) -> None:
        self.config, self.link, self.stats, self.clock = config, link, stats, clock
        self.topics = config.topics
        spool = config.spool
        self.spool = (
            Spool(spool.path, spool.max_bytes, spool.max_age_s, spool.on_full, clock)
            if spool.path is not None
            else None
        )
        if self.spool is not None:
            link.on_acknowledged = self.spool.acknowledged
        self._rejected_budget = 1.0
        self._last_budget_ts = clock()

    def reliably(self, topic: str, payload: str, retain: bool, coalesce_key: str | None = None) -> None:
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
                self.stats.rejected[Reason.SPOOL_ERROR] += 1
                log.error("spool failed (%s): %s sent without it", err, topic)
        self.link.publish(topic, payload, qos=1, retain=retain)

    def availability(self, device: str, state: str) -> None:
        """The device's retained online/offline."""
        self.link.publish(self.topics.device_availability.format(device=device), state, qos=1, retain=True)

    def state(self, device: str, state: str) -> None:
        """The device's retained normal/anomalous, sent straight (a re-announcement, not a change)."""
        self.link.publish(self.topics.state.format(device=device), state, qos=1, retain=True)

    def clear_device(self, device: str, availability: bool) -> None:
        """Clear a forgotten device's retained state (and availability) topics with empty payloads."""
        if availability:
            self.link.publish(self.topics.device_availability.format(device=device), b"", qos=1, retain=True)
        self.link.publish(self.topics.state.format(device=device), b"", qos=1, retain=True)

    def respond(self, response: CommandResponse) -> None:
        """A command's answer on its response topic."""
        topic = self.topics.command_response.format(agent_id=self.config.agent_id, command=response.command)
        payload = {
            "id": response.id,
            "command": response.command,
            "status": response.status,
            "detail": response.detail,
            "ts": self.clock(),
        }
        self.link.publish(topic, json.dumps(payload), qos=1)

    def rejected(self, where: str, reason: Reason, detail: str, now: float) -> None:
        """A notice on the rejected topic, at most stats.rejected_per_s of them (a token bucket)."""
        rate = self.config.stats.rejected_per_s
        self._rejected_budget = min(rate, self._rejected_budget + (now - self._last_budget_ts) * rate)
        self._last_budget_ts = now
        if self._rejected_budget >= 1.0:
            self._rejected_budget -= 1.0
            topic = self.topics.rejected.format(agent_id=self.config.agent_id)
            payload = {"source": where, "reason": reason, "detail": detail[:200], "ts": now}
            self.link.publish(topic, json.dumps(payload), qos=0)

    def to_node(self, topic: str, payload: bytes) -> None:
        """A Sparkplug command to an edge node (a rebirth request): QoS 0, never retained, per the spec."""
        self.link.publish(topic, payload, qos=0)

    def stats_message(self, snapshot: dict[str, object]) -> None:
        """The periodic stats message."""
        topic = self.topics.agent_stats.format(agent_id=self.config.agent_id)
        self.link.publish(topic, json.dumps(snapshot), qos=0)

    def flush_spool(self) -> None:
        """Send what the spool holds (after a reconnect)."""
        spool = self.spool
        if spool is not None:
            self._spool_do(lambda: spool.flush(self.link.publish_tracked))

    def keep_spool(self, flush: bool) -> None:
        """Loop housekeeping: with `flush`, send what waits; always forget what the broker acknowledged."""
        spool = self.spool
        if spool is None:
            return
        if flush and spool.waiting():
            self.flush_spool()
        self._spool_do(spool.settle)

    def close(self) -> None:
        """Close the spool's file."""
        if self.spool is not None:
            self.spool.close()

    def _spool_do(self, action: Callable[[], object]) -> None:
        """Spool housekeeping; a disk error is logged and counted, never fatal (retried on the next loop)."""
        try:
            action()
        except sqlite3.Error as err:
            self.stats.rejected[Reason.SPOOL_ERROR] += 1
            log.error("spool: %s; retried on the next loop", err)
