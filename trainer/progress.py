"""One log line per epoch, with the time per epoch and what is left: a fit that runs for minutes says so.

Why log lines rather than a progress bar: the fit runs under systemd, in CI and behind `make demo`, where a
bar is either hidden (no terminal) or garbles the log; a line per epoch reads the same everywhere.
"""

from __future__ import annotations

import logging
import time


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


class EpochProgress:
    """Logs `stage epoch k/n  key value ...  s/epoch  ETA` after each epoch, on the main rank only."""

    def __init__(self, logger: logging.Logger, stage: str, epochs: int, enabled: bool = True) -> None:
        self.logger, self.stage, self.epochs, self.enabled = logger, stage, epochs, enabled
        self.started = time.perf_counter()

    def epoch_done(self, epoch: int, **figures: float) -> None:
        """Report epoch `epoch` (1-based) with its figures."""
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        per_epoch = elapsed / max(epoch, 1)
        shown = "  ".join(f"{name} {value:.4g}" for name, value in figures.items())
        self.logger.info(
            "%s epoch %d/%d  %s  %.1f s/epoch  ETA %s",
            self.stage,
            epoch,
            self.epochs,
            shown,
            per_epoch,
            _clock(per_epoch * (self.epochs - epoch)),
        )
