"""A scored window's messages: the score topic (when configured), the device's retained state on a change,
and alert start/end messages with one id per alert, its peak and its top channels. Muted devices keep
their state and score messages; only their alerts are held back.
"""

from __future__ import annotations

import json
import logging
import uuid

from edge_agent.bundle import ALERT_LEVEL
from edge_agent.config import AgentConfig
from edge_agent.pipeline import Outcome, ScoringPipeline
from edge_agent.publisher import Publisher
from edge_agent.stats import Stats
from edge_agent.status_board import StatusBoard

log = logging.getLogger(__name__)


class AlertPublisher:
    """Turns outcomes into messages; owns the open alerts' ids and the muted devices."""

    def __init__(
        self, config: AgentConfig, publisher: Publisher, stats: Stats, board: StatusBoard | None
    ) -> None:
        self.config, self.publisher, self.stats, self.board = config, publisher, stats, board
        self.muted: set[str] = set()
        self._open: dict[str, str] = {}  # device -> id of its open alert

    def has_open_alert(self, device: str) -> bool:
        """A device with an open alert is never forgotten for silence."""
        return device in self._open

    def publish(self, outcome: Outcome, pipeline: ScoringPipeline, with_score: bool = True) -> None:
        """Every message one scored window calls for (its score message only `with_score`)."""
        decision = outcome.decision
        device = outcome.reading.device
        topics = self.config.topics
        if topics.score is not None and with_score:
            score = {
                "device": device,
                "ts": outcome.reading.ts,
                "seq": outcome.reading.seq,
                "score": round(outcome.score, 6),
                "threshold": round(decision.threshold, 6),
                "severity": pipeline.severity.of(outcome.score),
                "agent_id": self.config.agent_id,
            }
            self.publisher.link.publish(topics.score.format(device=device), json.dumps(score), qos=0)
        if self.board is not None:
            self.board.scored(device, outcome.reading.ts, outcome.score, decision.threshold)
        if decision.changed:
            self.publisher.reliably(
                topics.state.format(device=device), decision.state, True, f"state:{device}"
            )
        if decision.alert is None or device in self.muted:
            return
        if decision.alert == "start":
            self._open[device] = uuid.uuid4().hex
            self.stats.alerts += 1
        alert_id = self._open.get(device, uuid.uuid4().hex)
        if decision.alert == "end":
            self._open.pop(device, None)
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
            "bundle_id": pipeline.bundle_id,
            "agent_id": self.config.agent_id,
        }
        self.publisher.reliably(topics.alert.format(device=device), json.dumps(payload), False)
        if self.board is not None:
            self.board.alert(payload)
        log.info(
            "alert %s %s: %s score %.4g (threshold %.4g, peak %.4g), top channels %s",
            decision.alert,
            device,
            payload["severity"],
            outcome.score,
            decision.threshold,
            decision.peak,
            ", ".join(f"{c} {v:.3g}" for c, v in outcome.top_channels()),
        )
