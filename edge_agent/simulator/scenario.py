"""A simulated fleet run: devices, rates, and which faults happen when (YAML, validated with pydantic).

Faults come from explicit `events`, from random injection (`random`), or both. Random faults are placed so a
scorer can see each one on its own: never in a device's first window (the agent has no window yet), and
never closer to the previous fault on the same device than a window (that window would hold both).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.errors import ConfigError
from edge_agent.simulator.faults import ALL_KINDS, ANOMALY_KINDS, SPIKE, Injection, draw_channels
from edge_agent.yaml_config import load_yaml_model

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_kinds(kinds: list[str]) -> list[str]:
    unknown = sorted(set(kinds) - set(ALL_KINDS))
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(ALL_KINDS)}")
    return kinds


class Event(_Strict):
    """One planned fault."""

    device: int = Field(ge=0, description="device index, 0-based")
    kind: str
    at_s: float = Field(ge=0, description="seconds after the device's start")
    duration_s: float = Field(gt=0)
    channels: list[str] | None = Field(None, description="channel names; one chosen at random if absent")
    magnitude: float = Field(1.0, gt=0, description="in units of the channel's normal spread")

    @field_validator("kind")
    @classmethod
    def _known(cls, kind: str) -> str:
        return _check_kinds([kind])[0]


class RandomFaults(_Strict):
    """Faults drawn by chance."""

    kinds: list[str] = Field(default_factory=lambda: list(ANOMALY_KINDS))
    per_device_hour: float = Field(6.0, ge=0, description="expected faults per affected device and hour")
    device_fraction: float = Field(0.5, ge=0, le=1, description="share of devices that get faults")
    duration_s: tuple[float, float] = Field((20.0, 60.0), description="uniform range of fault lengths")
    magnitude: float = Field(1.0, gt=0)

    @field_validator("kinds")
    @classmethod
    def _known(cls, kinds: list[str]) -> list[str]:
        return _check_kinds(kinds)

    @model_validator(mode="after")
    def _ordered(self) -> RandomFaults:
        low, high = self.duration_s
        if not 0 < low <= high:
            raise ValueError(f"duration_s must be 0 < low <= high, got {self.duration_s}")
        return self


class Scenario(_Strict):
    """Everything a simulated run needs apart from the bundle and the broker."""

    devices: int = Field(10, ge=1, le=100_000)
    rate_hz: float = Field(1.0, gt=0, le=1000, description="readings per second per device")
    rate_spread: float = Field(0.0, ge=0, lt=1, description="each device's rate varies by up to this share")
    duration_s: float = Field(120.0, gt=0)
    seed: int = 0
    variation: float = Field(0.03, ge=0, le=0.5, description="per-device gain/offset spread")
    vet: bool = Field(
        True,
        description="score each chunk of a stream with the graph the agent serves and draw it again while "
        "a window is above the alert threshold, so clean devices stay clean (faults are added after); "
        "false: the generator's streams as drawn",
    )
    device_prefix: str = Field("sim", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    random: RandomFaults | None = Field(default_factory=RandomFaults)
    events: list[Event] = Field(default_factory=list)

    @model_validator(mode="after")
    def _events_fit(self) -> Scenario:
        for event in self.events:
            if event.device >= self.devices:
                raise ValueError(f"event on device {event.device}, but the fleet has {self.devices}")
        return self

    def device_name(self, index: int) -> str:
        """Stable device ids: prefix-0001 and so on."""
        return f"{self.device_prefix}-{index + 1:04d}"


def load_scenario(path: Path | None, overrides: dict[str, object] | None = None) -> Scenario:
    """A scenario file (optional) with overrides; errors name the file and line."""
    return load_yaml_model(Scenario, path, overrides)


def plan_faults(
    scenario: Scenario,
    channels: list[str],
    starts: list[float],
    rates: list[float],
    window_len: int,
) -> list[Injection]:
    """Every fault of the run, from the events and the random draw, in device time."""
    rng = np.random.default_rng(scenario.seed + 1)
    planned: list[Injection] = []
    for event in scenario.events:
        if event.channels is None:
            chosen = draw_channels(rng, event.kind, len(channels))
        else:
            unknown = [c for c in event.channels if c not in channels]
            if unknown:
                raise ConfigError(f"event channels {unknown} are not in the bundle ({', '.join(channels)})")
            chosen = [channels.index(c) for c in event.channels]
        start = starts[event.device] + event.at_s
        planned.append(
            Injection(
                scenario.device_name(event.device),
                event.kind,
                start,
                start + event.duration_s,
                chosen,
                event.magnitude,
            )
        )
    late = [e for e in scenario.events if e.at_s >= scenario.duration_s]
    if late:
        log.warning(
            "%d planned event(s) start at or after the run's end (%.0f s) and will not happen: %s",
            len(late),
            scenario.duration_s,
            ", ".join(f"{e.kind} on device {e.device} at {e.at_s:.0f} s" for e in late[:5]),
        )
    if scenario.random is not None and scenario.random.kinds and scenario.random.per_device_hour > 0:
        drawn = _draw_random(scenario, scenario.random, channels, starts, rates, window_len, rng)
        if not drawn:
            window_s = window_len / min(rates)
            log.warning(
                "the random plan drew no fault: %.1f faults per device-hour on %d device(s) over %.0f s, "
                "each needing %.0f s of warm-up and a %.0f s window after it; a longer --duration or a "
                "higher random.per_device_hour gives some",
                scenario.random.per_device_hour,
                round(scenario.random.device_fraction * scenario.devices),
                scenario.duration_s,
                1.5 * window_s,
                window_s,
            )
        planned.extend(drawn)
    return sorted(planned, key=lambda injection: (injection.start, injection.device))


def _draw_random(
    scenario: Scenario,
    random: RandomFaults,
    channels: list[str],
    starts: list[float],
    rates: list[float],
    window_len: int,
    rng: np.random.Generator,
) -> list[Injection]:
    affected = rng.permutation(scenario.devices)[: round(random.device_fraction * scenario.devices)]
    drawn = []
    for index in sorted(int(i) for i in affected):
        window_s = window_len / rates[index]
        clock = window_s * 1.5  # the first window is the agent's warm-up
        mean_gap_s = 3600.0 / random.per_device_hour
        while True:
            clock += rng.exponential(mean_gap_s)
            kind = str(rng.choice(random.kinds))
            duration = float(rng.uniform(*random.duration_s))
            if kind == SPIKE:
                duration = 2.0 / rates[index]  # a spike is a couple of readings long
            if clock + duration > scenario.duration_s - window_s:
                break  # leave the agent a window after the last fault to see it
            start = starts[index] + clock
            drawn.append(
                Injection(
                    scenario.device_name(index),
                    kind,
                    start,
                    start + duration,
                    draw_channels(rng, kind, len(channels)),
                    random.magnitude,
                )
            )
            clock += duration + window_s  # the next fault never shares a window with this one
    return drawn
