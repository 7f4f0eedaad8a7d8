"""Per-device alert decisions: threshold, debounce, hysteresis, cooldown. Pure; time comes in with each call.

A single window above the threshold is not an alert: `start_after` consecutive windows must be. An alert ends
after `end_after` consecutive windows below `hysteresis * threshold`, so a score hovering at the threshold
does not flap. After an end, no new alert starts for `cooldown_s` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

NORMAL = "normal"
ANOMALOUS = "anomalous"


class DecisionConfig(BaseModel):
    """How scores become alerts."""

    model_config = ConfigDict(extra="forbid")

    start_after: int = Field(3, ge=1, description="consecutive windows above threshold that start an alert")
    end_after: int = Field(5, ge=1, description="consecutive windows below the end level that end it")
    hysteresis: float = Field(0.9, gt=0, le=1, description="end level as a fraction of the threshold")
    cooldown_s: float = Field(0.0, ge=0, description="quiet time after an alert ends before a new one")
    level: str | None = Field(
        None,
        description="the bundle's severity level (e.g. critical) whose threshold starts alerts; unset: the "
        "bundle's alert threshold. Fewer, surer alerts without copying numbers out of the bundle",
    )
    threshold_overrides: dict[str, float] = Field(
        default_factory=dict, description="per-device thresholds replacing the bundle's"
    )


@dataclass(slots=True)  # not frozen: one per reading, and a frozen __init__ costs 4x this one
class Decision:
    """Outcome of one score for one device."""

    state: str  # NORMAL or ANOMALOUS after this score
    changed: bool  # state differs from before this score
    alert: str | None  # "start", "end" or None
    threshold: float
    peak: float  # highest score of the open (or just ended) alert: its severity; else this score


@dataclass(slots=True)
class _DeviceState:
    state: str = NORMAL
    above: int = 0
    below: int = 0
    ended_at: float = float("-inf")
    peak: float = float("-inf")


class Decider:
    """Decision state of every device."""

    def __init__(self, threshold: float, config: DecisionConfig) -> None:
        self.threshold = threshold
        self.config = config
        self._devices: dict[str, _DeviceState] = {}
        # Per-device thresholds: the config's at start, then the `threshold` command's; runtime state, so it
        # lives here and not in the (immutable) config.
        self._overrides = dict(config.threshold_overrides)

    def adopt_states(self, previous: Decider) -> None:
        """Continue the open alerts of another decider (after a model swap)."""
        self._devices = previous._devices
        self.adopt_overrides(previous)

    def adopt_overrides(self, previous: Decider) -> None:
        """Keep the per-device thresholds set at run time (after any model swap)."""
        self._overrides = previous._overrides

    def set_override(self, device: str, value: float | None) -> None:
        """A device's own threshold; None goes back to the bundle's."""
        if value is None:
            self._overrides.pop(device, None)
        else:
            self._overrides[device] = value

    def forget(self, device: str) -> None:
        """Drop a device's decision state."""
        self._devices.pop(device, None)

    def threshold_for(self, device: str) -> float:
        """The device's override, or the bundle's threshold."""
        return self._overrides.get(device, self.threshold)

    def state_of(self, device: str) -> str:
        """Current state; devices never scored are normal."""
        state = self._devices.get(device)
        return state.state if state else NORMAL

    def update(self, device: str, score: float, now: float) -> Decision:
        """Feed one score; returns the decision after it."""
        state = self._devices.setdefault(device, _DeviceState())
        threshold = self.threshold_for(device)
        if state.state == NORMAL:
            state.above = state.above + 1 if score > threshold else 0
            cooling = now - state.ended_at < self.config.cooldown_s
            if state.above >= self.config.start_after and not cooling:
                state.state, state.above, state.below, state.peak = ANOMALOUS, 0, 0, score
                return Decision(ANOMALOUS, True, "start", threshold, score)
            return Decision(NORMAL, False, None, threshold, score)
        state.below = state.below + 1 if score < self.config.hysteresis * threshold else 0
        if state.below >= self.config.end_after:
            state.state, state.above, state.below, state.ended_at = NORMAL, 0, 0, now
            return Decision(NORMAL, True, "end", threshold, state.peak)
        state.peak = max(state.peak, score)
        return Decision(ANOMALOUS, False, None, threshold, state.peak)
