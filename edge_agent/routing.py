"""Where a telemetry message goes: its device (from the topic), whether this shard scores it, and which
model does. Kept out of the config schema so the schema stays data and this stays testable alone.
"""

from __future__ import annotations

import fnmatch
import zlib
from typing import NamedTuple

from edge_agent.config import DEFAULT_MODEL, AgentConfig, RouteConfig, ShardConfig
from edge_agent.telemetry import DEVICE_ID

ROUTES_PER_DEVICE = 2  # the topic memo holds this many topics per device the agent may track


class Route(NamedTuple):
    """A telemetry topic's device, whether this shard scores it, its model, and whether the id is valid."""

    device: str | None
    owned: bool
    model: str
    valid_id: bool


def device_of(telemetry_filter: str, topic: str) -> str | None:
    """The '+' level of `telemetry_filter` in `topic`, or None when the topic does not match it."""
    pattern, parts = telemetry_filter.split("/"), topic.split("/")
    if len(pattern) != len(parts):
        return None
    device = None
    for want, got in zip(pattern, parts, strict=True):
        if want == "+":
            device = got
        elif want != got:
            return None
    return device


def telemetry_topic(telemetry_filter: str, device: str) -> str:
    """The topic a device publishes on: the telemetry filter with its '+' level set to the device id."""
    return "/".join(device if level == "+" else level for level in telemetry_filter.split("/"))


def alert_filter(alert_template: str) -> str:
    """The subscription that takes every device's alerts: the alert template with '+' for the device."""
    return alert_template.format(device="+")


def owns(shard: ShardConfig, device: str) -> bool:
    """Whether this agent's shard scores `device`: CRC-32 of the id, stable across processes and restarts."""
    return shard.count == 1 or zlib.crc32(device.encode()) % shard.count == shard.index


def model_for(routes: list[RouteConfig], device: str) -> str:
    """The model name that scores `device`: the first matching route, else `default`."""
    for route in routes:
        if fnmatch.fnmatchcase(device, route.devices):
            return route.bundle
    return DEFAULT_MODEL


class Router:
    """Routes telemetry topics; memoised, since a fleet repeats its topics."""

    def __init__(self, config: AgentConfig) -> None:
        self._filter = config.topics.telemetry
        self._shard = config.shard
        self._routes = config.routes
        self._memo: dict[str, Route] = {}
        # Topics are attacker-chosen: the memo is bounded by the fleet the agent may track, so a flood of
        # new ids past ingest.max_devices cannot grow the agent's memory through it.
        self._memo_limit = ROUTES_PER_DEVICE * config.ingest.max_devices

    def route(self, topic: str) -> Route:
        """Where `topic`'s messages go."""
        route = self._memo.get(topic)
        if route is None:
            device = device_of(self._filter, topic)
            if device is None:
                route = Route(None, True, DEFAULT_MODEL, False)
            else:
                valid = bool(DEVICE_ID.fullmatch(device))
                route = Route(device, owns(self._shard, device), model_for(self._routes, device), valid)
            if len(self._memo) >= self._memo_limit:
                self._memo.clear()
            self._memo[topic] = route
        return route
