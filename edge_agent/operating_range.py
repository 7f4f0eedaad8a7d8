"""Says, once per device, when live readings leave the range the bundle was trained on.

Why: the most common cause of "everything alarms" is a machine at an operating point the training data
never showed (another duty level, a new season, a recalibrated sensor). The score cannot tell that apart
from a fault; a log line naming the channels and how far out they are can.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from edge_agent.bundle import BundleManifest

log = logging.getLogger(__name__)

MARGIN = 0.25  # beyond the training span by more than this share of it (or of the channel's scale)


class OperatingRange:
    """The training rows' per-channel range, widened by MARGIN; remembers which devices were told."""

    def __init__(self, manifest: BundleManifest) -> None:
        norm = manifest.normalisation
        self.channels = list(manifest.channels)
        scale = np.asarray(norm.scale, dtype=np.float64)
        if norm.low is None or norm.high is None:  # bundles made before the range was recorded
            mean = np.asarray(norm.mean, dtype=np.float64)
            low, high = mean - 4 * scale, mean + 4 * scale
        else:
            low, high = np.asarray(norm.low, dtype=np.float64), np.asarray(norm.high, dtype=np.float64)
        slack = MARGIN * np.maximum(high - low, scale)
        self.low, self.high = low - slack, high + slack
        self._told: set[str] = set()

    def outside(self, values: npt.NDArray[np.floating]) -> list[str]:
        """Names of the channels of one reading that lie outside the widened range."""
        out = (values < self.low) | (values > self.high)
        return [self.channels[i] for i in np.flatnonzero(out)]

    def check_batch(self, devices: list[str], values: npt.NDArray[np.floating]) -> None:
        """`check` for a batch [n, C] of readings: one comparison, a log line only for rows outside."""
        if not len(values):
            return
        rows = np.flatnonzero(((values < self.low) | (values > self.high)).any(axis=1))
        for row in rows:
            self.check(devices[row], values[row])

    def check(self, device: str, values: npt.NDArray[np.floating]) -> list[str]:
        """Warn the first time `device` sends a reading outside the range; returns the channels outside."""
        if device in self._told:
            return []
        channels = self.outside(values)
        if channels:
            self._told.add(device)
            parts = []
            for name in channels[:5]:
                i = self.channels.index(name)
                parts.append(f"{name} {float(values[i]):.4g} (range {self.low[i]:.4g}..{self.high[i]:.4g})")
            detail = ", ".join(parts)
            log.warning(
                "device %s: readings outside the range the bundle was trained on, widened by %d%%: %s. "
                "A different operating point makes every window look anomalous: retrain on data that "
                "covers it, or route this device to a bundle that does",
                device,
                int(MARGIN * 100),
                detail,
            )
        return channels
