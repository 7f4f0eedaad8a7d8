"""The denoising encoder's corruption: one fault on one channel of the chosen share of windows."""

from __future__ import annotations

import torch

from trainer.encoder_corruption import corrupt
from trainer.networks import without_level


def _windows(batch: int = 400, channels: int = 3, length: int = 32) -> torch.Tensor:
    return torch.randn(batch, channels, length, generator=torch.Generator().manual_seed(1))


def test_share_of_windows_changed_and_one_channel_each() -> None:
    clean = _windows()
    out = corrupt(clean, 0.5, torch.Generator().manual_seed(0))
    changed = (out != clean).any(dim=2)  # [b, C]
    per_window = changed.sum(dim=1)
    assert int(per_window.max()) == 1  # never more than one channel
    share = float((per_window == 1).float().mean())
    assert 0.4 < share < 0.6  # about half the windows (a stuck segment of one step changes nothing)
    assert torch.equal(clean, _windows())  # the input is left as it was


def test_fault_spans_at_most_half_the_window() -> None:
    clean = _windows(length=40)
    out = corrupt(clean, 1.0, torch.Generator().manual_seed(2))
    steps = (out != clean).any(dim=1).sum(dim=1)
    assert int(steps.max()) <= 20
    assert int((steps > 0).sum()) > 350


def test_level_removed_again_where_the_networks_see_no_level() -> None:
    clean = without_level(_windows())
    out = corrupt(clean, 1.0, torch.Generator().manual_seed(3), remove_level=True)
    assert float(out.mean(dim=2).abs().max()) < 1e-5
    assert not torch.equal(out, clean)


def test_share_zero_is_the_input() -> None:
    clean = _windows()
    assert torch.equal(corrupt(clean, 0.0, torch.Generator().manual_seed(4)), clean)
