"""Per-device data quality and score drift, for the stats topic and Prometheus.

Data quality: of the messages a device sent, the share rejected (any reason) and the share missing a
channel. Drift: the share of the device's recent scores above the 90th percentile of the scores the bundle
was calibrated on. On data like the calibration data it is about 0.10; `drift` is that share divided by
0.10, so 1 means "as calibrated" and 3 means three times as many high scores as expected. A device whose
drift stays high without alerts is a sign the model no longer fits it (retrain, or set its threshold).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge_agent.reasons import Reason

RECENT_SCORES = 512
MIN_SCORES_FOR_DRIFT = 64
REFERENCE_QUANTILE = 0.9
DRIFT_KEY = "holdout_q90"
POT_START_KEY = "initial_threshold"  # bundles calibrated before holdout quantiles were recorded (POT, q=0.9)


@dataclass(slots=True)
class _Device:
    received: int = 0
    rejected: int = 0
    missing_channel: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_SCORES))
    reference: float | None = None  # of the model that scores this device


def reference_score(details: dict[str, float]) -> float | None:
    """The calibration holdout's 90th-percentile score from a threshold's details, if recorded."""
    if DRIFT_KEY in details:
        return details[DRIFT_KEY]
    if details.get("initial_quantile") == REFERENCE_QUANTILE and POT_START_KEY in details:
        return details[POT_START_KEY]
    return None


class DeviceHealth:
    """Counters and recent scores per device; bounded in devices like the window store."""

    def __init__(self, max_devices: int = 100_000) -> None:
        self.max_devices = max_devices
        self._devices: dict[str, _Device] = {}

    def _get(self, device: str) -> _Device | None:
        entry = self._devices.get(device)
        if entry is None and len(self._devices) < self.max_devices:
            entry = self._devices[device] = _Device()
        return entry

    def __len__(self) -> int:
        """Devices with figures."""
        return len(self._devices)

    def forget(self, device: str) -> None:
        """Drop a device's figures."""
        self._devices.pop(device, None)

    def received(self, device: str, readings: int = 1) -> None:
        """Readings on the device's telemetry topic, usable or not (a message refused whole counts as one):
        per reading, as refusals are, so that a batch's rates stay shares."""
        entry = self._get(device)
        if entry is not None:
            entry.received += readings

    def rejected(self, device: str, reason: Reason) -> None:
        """One of its readings (or a message refused whole) was rejected."""
        entry = self._devices.get(device)
        if entry is not None:
            entry.rejected += 1
            entry.missing_channel += reason == Reason.MISSING_CHANNEL

    def scored(self, device: str, score: float, reference: float | None) -> None:
        """One window scored by a model whose calibration reference is `reference`."""
        entry = self._devices.get(device)
        if entry is not None:
            if entry.reference != reference:
                entry.recent.clear()  # a new model: its scores are on another scale
                entry.reference = reference
            entry.recent.append(score)

    def snapshot(self, limit: int) -> dict[str, dict[str, float | int | None]]:
        """Per device: counts, rates and drift (None until enough scores or without a reference).

        At most `limit` devices, the worst first (by drift, then rejected share), so that a large fleet's
        stats message stays small while the devices that need a look are always in it.
        """
        out: dict[str, dict[str, float | int | None]] = {}
        for device, entry in self._devices.items():
            drift = None
            if entry.reference is not None and len(entry.recent) >= MIN_SCORES_FOR_DRIFT:
                share = float(np.mean(np.asarray(entry.recent) > entry.reference))
                drift = round(share / (1.0 - REFERENCE_QUANTILE), 3)
            out[device] = {
                "received": entry.received,
                "rejected_rate": round(entry.rejected / entry.received, 4) if entry.received else None,
                "missing_channel_rate": (
                    round(entry.missing_channel / entry.received, 4) if entry.received else None
                ),
                "drift": drift,
            }
        if len(out) <= limit:
            return out

        def badness(device: str) -> tuple[float, float]:
            return (out[device]["drift"] or 0.0, out[device]["rejected_rate"] or 0.0)

        worst = sorted(out, key=badness, reverse=True)
        return {device: out[device] for device in worst[:limit]}
