"""What every scoring backend offers, so the pipeline does not care which runtime is underneath."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class ScoreBatch:
    """Scores for a batch of windows."""

    scores: npt.NDArray[np.float32]  # [batch]
    contributions: npt.NDArray[np.float32]  # [batch, channels]; sums to the score per row


class Scorer(Protocol):
    """A loaded scorer graph ready for inference."""

    name: str

    def score(self, windows: npt.NDArray[np.float32]) -> ScoreBatch:
        """Score raw windows [batch, window, channels]."""
        ...

    def warmup(self) -> float:
        """Run one inference so the first real message is not slow; returns seconds taken."""
        ...

    def close(self) -> None:
        """Release runtime resources."""
        ...
