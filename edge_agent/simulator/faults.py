"""What the simulator can break: anomalies in the values, and faults in the transport. Pure numpy.

Anomalies are what the detector should alert on; transport faults are what the agent's ingest should
reject and count, without alerting. Magnitudes are in units of the channel's normal spread (its
normalisation scale), so one scenario means the same on any asset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

SPIKE = "spike"
LEVEL_SHIFT = "level_shift"
DRIFT = "drift"
STUCK = "stuck"
NOISE_BURST = "noise_burst"
DROPOUT = "dropout"
BROKEN_CORRELATION = "broken_correlation"
ANOMALY_KINDS = (SPIKE, LEVEL_SHIFT, DRIFT, STUCK, NOISE_BURST, DROPOUT, BROKEN_CORRELATION)

MALFORMED = "malformed"
NAN = "nan"
DUPLICATE = "duplicate"
OUT_OF_ORDER = "out_of_order"
CLOCK_SKEW = "clock_skew"
TRANSPORT_KINDS = (MALFORMED, NAN, DUPLICATE, OUT_OF_ORDER, CLOCK_SKEW)
ALL_KINDS = ANOMALY_KINDS + TRANSPORT_KINDS

CLOCK_SKEW_S = 3600.0  # far beyond any sane tolerance: the agent must reject these as future readings


@dataclass
class Injection:
    """One fault on one device over [start, end) in the device's own time (epoch seconds)."""

    device: str
    kind: str
    start: float
    end: float
    channels: list[int]  # indices into the bundle's channels
    magnitude: float = 1.0
    _frozen: npt.NDArray[np.float32] | None = field(default=None, repr=False)
    _ar_state: npt.NDArray[np.float32] | None = field(default=None, repr=False)

    def active(self, ts: float) -> bool:
        """Whether a reading at `ts` falls inside the fault."""
        return self.start <= ts < self.end

    def truth(self, channel_names: list[str]) -> dict[str, object]:
        """The ground-truth record, as published and written."""
        return {
            "device": self.device,
            "kind": self.kind,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "channels": [channel_names[i] for i in self.channels],
            "magnitude": self.magnitude,
            "transport": self.kind in TRANSPORT_KINDS,
        }

    def apply(
        self,
        row: npt.NDArray[np.float32],
        ts: float,
        mean: npt.NDArray[np.float32],
        scale: npt.NDArray[np.float32],
        rng: np.random.Generator,
    ) -> npt.NDArray[np.float32]:
        """The row as the broken device reports it (value anomalies only; others pass the row through)."""
        out = row.copy()
        chosen = self.channels
        spread = scale[chosen] * self.magnitude
        progress = (ts - self.start) / max(self.end - self.start, 1e-9)
        if self.kind == SPIKE:
            out[chosen] += 6.0 * spread
        elif self.kind == LEVEL_SHIFT:
            out[chosen] += 4.0 * spread
        elif self.kind == DRIFT:
            out[chosen] += 8.0 * spread * progress
        elif self.kind == STUCK:
            if self._frozen is None:
                self._frozen = row[chosen].copy()
            out[chosen] = self._frozen
        elif self.kind == NOISE_BURST:
            out[chosen] += 3.0 * spread * rng.standard_normal(len(chosen)).astype(np.float32)
        elif self.kind == BROKEN_CORRELATION:
            # The channel keeps its level and spread but moves on its own, unrelated to the others.
            if self._ar_state is None:
                self._ar_state = rng.standard_normal(len(chosen)).astype(np.float32)
            noise = rng.standard_normal(len(chosen)).astype(np.float32)
            self._ar_state = (0.9 * self._ar_state + np.sqrt(1 - 0.81) * noise).astype(np.float32)
            out[chosen] = mean[chosen] + 1.5 * scale[chosen] * self._ar_state
        result: npt.NDArray[np.float32] = out
        return result


def draw_channels(rng: np.random.Generator, kind: str, n_channels: int) -> list[int]:
    """The channel a random value anomaly touches; none for dropouts and transport faults."""
    if kind in TRANSPORT_KINDS or kind == DROPOUT:
        return []
    return [int(rng.integers(n_channels))]
