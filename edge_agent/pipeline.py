"""ScoringPipeline: readings -> windows -> one batched backend call -> decisions. The daemon's and the
offline `score` command's single code path, so what `score` reports is what the daemon would publish.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.backends import PRECISION_FILES, Scorer, open_scorer
from edge_agent.bundle import Bundle, load_bundle
from edge_agent.config import BackendConfig, IngestConfig
from edge_agent.decision import Decider, Decision, DecisionConfig
from edge_agent.operating_range import OperatingRange
from edge_agent.reasons import Reason
from edge_agent.telemetry import Reading
from edge_agent.windowing import OrderError, ReorderBuffer, WindowBatch, WindowStore

log = logging.getLogger(__name__)

TOP_CHANNELS = 3


@dataclass(slots=True)  # not frozen: one per reading, and a frozen __init__ costs 4x this one
class Outcome:
    """A scored window and what it decided."""

    reading: Reading  # the reading that completed the window
    score: float
    contributions: npt.NDArray[np.float32]  # [channels], summing to the score
    channels: list[str]
    decision: Decision

    def top_channels(self, count: int = TOP_CHANNELS) -> list[tuple[str, float]]:
        """(channel, contribution), largest first; computed on demand since only alerts carry it."""
        order = np.argsort(self.contributions)[::-1][:count]
        return [(self.channels[i], round(float(self.contributions[i]), 6)) for i in order]


@dataclass(frozen=True, slots=True)
class Dropped:
    """A reading the order policy refused."""

    reading: Reading
    reason: Reason


class ScoringPipeline:
    """Owns the windows and decisions of every device for one bundle and scorer."""

    def __init__(
        self,
        bundle: Bundle,
        scorer: Scorer,
        precision: str,
        decision: DecisionConfig,
        max_gap_s: float | None = None,
        reorder_depth: int = 0,
    ) -> None:
        manifest = bundle.manifest
        self.bundle_id = manifest.bundle_id
        self.channels = list(manifest.channels)
        self.sample_period_s = manifest.sample_period_s or 1.0
        self.scorer = scorer
        self.windows = WindowStore(manifest.window_len, manifest.hop_len, len(self.channels), max_gap_s)
        self.reorder = ReorderBuffer(reorder_depth)
        self._batch = WindowBatch(manifest.window_len, len(self.channels))
        threshold = bundle.threshold_for(PRECISION_FILES[precision])
        self.threshold = threshold  # its named severity levels name how far an alert's score went
        self.severity = threshold.ladder()  # ordered once: every scored window asks for its level
        self.decider = Decider(threshold.at_level(decision.level), decision)
        self.threshold_details = dict(threshold.details)  # calibration facts, e.g. the drift reference
        self.operating_range = OperatingRange(manifest)

    def adopt_state(self, previous: ScoringPipeline) -> bool:
        """Keep the devices' windows and alert states across a model swap when the shapes allow it."""
        same_shape = (
            self.channels == previous.channels
            and self.windows.window_len == previous.windows.window_len
            and self.windows.hop_len == previous.windows.hop_len
        )
        if same_shape:
            self.windows = previous.windows
            self.reorder = previous.reorder
            self.decider.adopt_states(previous.decider)
        else:
            self.decider.adopt_overrides(previous.decider)
        return same_shape

    def forget(self, device: str) -> None:
        """Drop every trace of a device: window, held readings, decision state."""
        self.windows.forget(device)
        self.reorder.forget(device)
        self.decider.forget(device)

    def push_many(self, readings: list[Reading]) -> tuple[list[Outcome], list[Dropped]]:
        """Window every reading, score all due windows in one backend call, decide in arrival order."""
        ready: list[Reading] = []
        dropped: list[Dropped] = []
        self._batch.clear()
        if readings:
            self.operating_range.check_batch(
                [r.device for r in readings], np.stack([r.values for r in readings])
            )
        for arrived in readings:
            try:
                released = self.reorder.push(arrived)
            except OrderError as err:
                dropped.append(Dropped(arrived, err.reason))
                continue
            for reading in released:
                try:
                    newest = self.windows.push_into(reading, self._batch)
                    if newest is not None:
                        ready.append(newest)
                except OrderError as err:
                    dropped.append(Dropped(reading, err.reason))
        if not ready:
            return [], dropped
        batch = self.scorer.score(self._batch.windows)
        scores, parts = finite(batch.scores), finite(batch.contributions)
        outcomes = []
        for reading, score, contributions in zip(ready, scores, parts, strict=True):
            decision = self.decider.update(reading.device, float(score), now=reading.ts)
            outcomes.append(Outcome(reading, float(score), contributions, self.channels, decision))
        return outcomes, dropped


SATURATED_SCORE = 1e30  # what a non-finite score is published as: strict JSON has no Infinity or NaN


def finite(values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Scores with every non-finite value saturated (a graph from before INPUT_CLIP, or a backend's
    overflow), so no message ever carries Infinity or NaN."""
    if np.isfinite(values).all():
        return values
    return np.nan_to_num(values, nan=SATURATED_SCORE, posinf=SATURATED_SCORE, neginf=0.0)


def open_pipeline(
    bundle_dir: Path,
    backend: BackendConfig,
    decision: DecisionConfig,
    ingest: IngestConfig | None = None,
    trusted_keys: Sequence[Path] = (),
) -> ScoringPipeline:
    """Load and verify the bundle (and its signature, with `trusted_keys`), open the backend, warm it up."""
    ingest = ingest or IngestConfig()
    bundle = load_bundle(bundle_dir, trusted_keys=trusted_keys)
    precision = bundle.served_precision(backend.precision)
    scorer = open_scorer(bundle, backend=backend.name, precision=precision, threads=backend.threads)
    log.info(
        "bundle %s, backend %s, warm-up %.1f ms",
        bundle.manifest.bundle_id,
        scorer.name,
        scorer.warmup() * 1e3,
    )
    return ScoringPipeline(bundle, scorer, precision, decision, ingest.max_gap_s, ingest.reorder_depth)
