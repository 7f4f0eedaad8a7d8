"""Clean streams the bundle's own agent passes: each chunk of a simulated stream is scored by the graph the
agent serves, at its alert threshold, before any reading of it is published; a chunk with a window above
the threshold is drawn again.

Why: a budget of 1e-3 per window is about 36 windows above the threshold per device-hour at 10 Hz on
data as normal as the training data (an earlier round's TEP bundle started 40 alerts per device-hour on
TEP's unseen normal run), and a generator less faithful than the data starts more (SMD and TEP bundles
drew 20 and 142 per device-hour). A simulated fleet whose clean devices raise alerts cannot serve
integration tests, whose question is whether the alerts come from the faults. The idea is discriminator
rejection sampling (Azadi et al., 2019) with the agent's whole score as the judge. Faults are added to the
rows after, so injected faults are scored as drawn. The generator's own fidelity is measured without it
(`vet: false`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt

from edge_agent.backends import PRECISION_FILES, Scorer, open_scorer
from edge_agent.bundle import Bundle
from edge_agent.vocabulary import Precision

ATTEMPTS = 8  # draws of one chunk before the quietest is kept; the demo's streams pass on the first


@dataclass
class VettingCounts:
    """What the judge did, for a run's report: chunks published, draws made again, times it went back
    after every draw of a chunk failed, the unpublished chunks it dropped then to draw them again, and
    chunks published above the threshold after all that (the generator could not make a quiet one there)."""

    chunks: int = 0
    redrawn: int = 0
    backtracked: int = 0
    dropped: int = 0
    kept_above: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class ChunkJudge:
    """Scores the windows a chunk completes, given the rows before it, as the agent would."""

    scorer: Scorer
    threshold: float
    window_len: int
    attempts: int = ATTEMPTS
    counts: VettingCounts = field(default_factory=VettingCounts)

    @classmethod
    def for_bundle(cls, bundle: Bundle, precision: str = Precision.INT8) -> ChunkJudge:
        """The graph and threshold the agent serves by default (FP32 where INT8 was refused at fit time)."""
        served = bundle.served_precision(precision)
        scorer = open_scorer(bundle, precision=served, threads=1)
        threshold = bundle.threshold_for(PRECISION_FILES[served]).value
        return cls(scorer, threshold, bundle.manifest.window_len)

    def worst(self, before: npt.NDArray[np.float32], chunk: npt.NDArray[np.float32]) -> float:
        """The highest score of the windows that end in `chunk`, `before` holding the rows that come before
        it (any number); -inf when no window is complete yet."""
        reach = before[max(len(before) - (self.window_len - 1), 0) :]
        rows = np.concatenate([reach, chunk])
        if len(rows) < self.window_len:
            return float("-inf")
        windows = np.lib.stride_tricks.sliding_window_view(rows, self.window_len, axis=0)
        return float(self.scorer.score(np.ascontiguousarray(windows.transpose(0, 2, 1))).scores.max())
