"""Corrupted copies of training windows, for an encoder that maps a window with a fault to its normal self.

Why: f-AnoGAN's encoder maps the whole window, so once a fault sits anywhere in a window the
reconstruction is off at every step, the newest included. Each window then scores high until the fault has
left it: most false alarms on SMD (80 %) are such windows, one window length after a labelled anomaly
ended. An encoder trained to reconstruct the clean window from a corrupted one (a denoising objective)
leaves the residual where the fault is, so the terms that read the newest steps can let go of a fault that
has ended and still see one that is there.
"""

from __future__ import annotations

import torch

from trainer.networks import without_level

# Sizes in normalised units (each channel's training spread), as trainer.synthetic_anomalies uses them.
SPIKE_SIZE = 6.0
SHIFT_SIZE = 3.0
NOISE_SIZE = 2.0
KINDS = 4  # spike, level shift over the segment, noise over the segment, stuck over the segment


def corrupt(
    windows: torch.Tensor, share: float, generator: torch.Generator, remove_level: bool = False
) -> torch.Tensor:
    """Copies of `windows` [b, C, W] where `share` of them carry one fault on one channel.

    The fault sits on a random segment of at most half the window, anywhere in it, so the encoder learns
    to ignore it wherever it is. With `remove_level` the corrupted copy loses its own level again, as the
    scorer graph removes the level of whatever arrives.
    """
    batch, channels, length = windows.shape
    out = windows.clone()
    chosen = torch.nonzero(torch.rand(batch, generator=generator) < share).flatten()
    if len(chosen) == 0:
        return out
    spans = torch.randint(1, max(2, length // 2 + 1), (len(chosen),), generator=generator)
    starts = (torch.rand(len(chosen), generator=generator) * (length - spans + 1)).long()
    lanes = torch.randint(0, channels, (len(chosen),), generator=generator)
    kinds = torch.randint(0, KINDS, (len(chosen),), generator=generator)
    signs = torch.randint(0, 2, (len(chosen),), generator=generator).float() * 2 - 1
    for row, start, span, lane, kind, sign in zip(
        chosen.tolist(),
        starts.tolist(),
        spans.tolist(),
        lanes.tolist(),
        kinds.tolist(),
        signs.tolist(),
        strict=True,
    ):
        segment = out[row, lane, start : start + span]
        if kind == 0:
            segment[-1] += sign * SPIKE_SIZE
        elif kind == 1:
            segment += sign * SHIFT_SIZE
        elif kind == 2:
            segment += NOISE_SIZE * torch.randn(span, generator=generator)
        else:
            segment[:] = segment[0].clone()
    return without_level(out) if remove_level else out
