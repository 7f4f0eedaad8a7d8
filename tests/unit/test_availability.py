"""Device availability bookkeeping: online when first heard, offline once after a silence, online again."""

from __future__ import annotations

from edge_agent.availability import DeviceAvailability


def test_transitions_are_reported_once_each() -> None:
    availability = DeviceAvailability(offline_after_s=10)
    assert availability.heard("a", now=0) is True
    assert availability.heard("a", now=5) is False
    assert availability.heard("b", now=6) is True
    assert availability.expired(now=14) == []
    assert availability.expired(now=15.5) == ["a"]  # last heard at 5
    assert availability.expired(now=16.5) == ["b"]
    assert availability.expired(now=100) == []  # already offline: not reported again
    assert availability.online() == 0
    assert availability.heard("a", now=101) is True
    assert availability.online() == 1
