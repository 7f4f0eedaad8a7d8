"""Sparkplug B topics: which ones the agent follows and what they name. No protobuf here.

Why a module of its own: the payloads need the protobuf runtime and the Sparkplug state (about 4 MB of the
agent's memory), which an agent without `sparkplug.enabled` never loads; its ingest still has to tell
Sparkplug topics from JSON ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.config import SparkplugConfig

NAMESPACE = "spBv1.0"
DATA, BIRTH, DEATH = "DATA", "BIRTH", "DEATH"


def subscriptions(config: SparkplugConfig) -> tuple[str, ...]:
    """The topic filters the agent needs: node and device births and deaths, device data (and node data)."""
    group = config.group_id
    filters = [f"{NAMESPACE}/{group}/{kind}/+" for kind in ("NBIRTH", "NDEATH")]
    filters += [f"{NAMESPACE}/{group}/{kind}/+/+" for kind in ("DBIRTH", "DDEATH", "DDATA")]
    if config.ndata:
        filters.append(f"{NAMESPACE}/{group}/NDATA/+")
    return tuple(filters)


def is_sparkplug(topic: str) -> bool:
    """A topic in the Sparkplug B namespace."""
    return topic.startswith(NAMESPACE + "/")


@dataclass(frozen=True, slots=True)
class SparkplugTopic:
    """A parsed Sparkplug topic: `kind` is DATA, BIRTH or DEATH; `device` is None for node messages."""

    group: str
    node: str
    device: str | None
    kind: str


def parse_topic(topic: str) -> SparkplugTopic | None:
    """The topic's parts, or None for a topic that is not a Sparkplug message the agent follows."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE:
        return None
    message_type = parts[2]
    scope, kind = message_type[:1], message_type[1:]
    if kind not in (DATA, BIRTH, DEATH) or (scope == "N") != (len(parts) == 4) or scope not in "ND":
        return None
    return SparkplugTopic(parts[1], parts[3], parts[4] if len(parts) == 5 else None, kind)
