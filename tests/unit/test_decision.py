"""Debounce, hysteresis, cooldown and per-device thresholds."""

from __future__ import annotations

from edge_agent.decision import ANOMALOUS, NORMAL, Decider, DecisionConfig


def _run(decider: Decider, scores: list[float], device: str = "d", start: float = 0.0) -> list[str | None]:
    return [decider.update(device, s, now=start + i).alert for i, s in enumerate(scores)]


def test_alert_needs_consecutive_windows_and_ends_below_the_hysteresis_level() -> None:
    decider = Decider(1.0, DecisionConfig(start_after=3, end_after=2, hysteresis=0.8))
    alerts = _run(decider, [2, 2, 0, 2, 2, 2, 0.9, 0.7, 0.9, 0.7, 0.7, 0.5])
    # Two highs then a low do not start; three do. 0.9 is below 1.0 but above 0.8, so it does not count down.
    assert alerts == [None, None, None, None, None, "start", None, None, None, None, "end", None]
    assert decider.state_of("d") == NORMAL


def test_cooldown_suppresses_a_new_start() -> None:
    decider = Decider(1.0, DecisionConfig(start_after=1, end_after=1, cooldown_s=10))
    assert _run(decider, [2, 0]) == ["start", "end"]
    assert _run(decider, [2, 2], start=5) == [None, None]
    assert decider.update("d", 2, now=12).alert == "start"


def test_per_device_override() -> None:
    decider = Decider(1.0, DecisionConfig(start_after=1, threshold_overrides={"noisy": 5.0}))
    assert decider.update("noisy", 3.0, now=0).alert is None
    decision = decider.update("calm", 3.0, now=0)
    assert decision.alert == "start" and decision.state == ANOMALOUS and decision.changed
    assert decider.threshold_for("noisy") == 5.0


def test_an_alert_remembers_its_peak_until_it_ends_and_the_next_starts_afresh() -> None:
    decider = Decider(1.0, DecisionConfig(start_after=1, end_after=2))
    peaks = [decider.update("d", s, now=i).peak for i, s in enumerate([0.5, 2.0, 7.0, 3.0, 0.1, 0.1, 1.5])]
    # normal: the score; open alert: its highest score so far; the end carries the whole alert's peak;
    # a new alert starts from its own first score.
    assert peaks == [0.5, 2.0, 7.0, 7.0, 7.0, 7.0, 1.5]
