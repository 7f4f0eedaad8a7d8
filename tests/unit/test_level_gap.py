"""The level choice's tie margin grows with the sampling error of the paired recall difference, so a lead the
check windows cannot support goes to the level fitted first."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.auto_level import level_winner, recall_gap
from trainer.auto_score import TIE_MARGIN

KINDS, BLOCK = 6, 8


def _hits(rate_by_block: list[float], seed: int) -> np.ndarray:
    """[kinds, windows] hits whose share per block of BLOCK windows is about `rate_by_block`."""
    rng = np.random.default_rng(seed)
    rates = np.repeat(rate_by_block, BLOCK)
    return rng.random((KINDS, len(rates))) < rates


def _served(lead: float, margin: float) -> str:
    return level_winner({"remove": 0.5, "keep": 0.5 + lead}, {}, 1e-3, lambda top, other: margin)


def test_a_lead_held_in_every_block_needs_little_more_than_the_fixed_margin() -> None:
    other = _hits([0.5] * 20, seed=0)
    better = other | _hits([0.1] * 20, seed=1)  # the same hits plus about a tenth more, everywhere
    gap = recall_gap(better, other, BLOCK)
    assert gap.blocks == 20 and gap.difference > 0.04
    assert gap.difference > gap.margin >= TIE_MARGIN
    assert (
        level_winner({"remove": 0.5, "keep": 0.5 + gap.difference}, {}, 1e-3, lambda a, b: gap.margin)
        == "keep"
    )


def test_a_lead_from_one_stretch_of_windows_is_within_its_sampling_error() -> None:
    other = _hits([0.5] * 10, seed=0)
    # The same average lead, all of it in one block: a lead one stretch of the holdout makes.
    burst = _hits([1.0] + [0.0] * 9, seed=1)
    better = other | burst
    gap = recall_gap(better, other, BLOCK)
    assert gap.difference > 0.04
    assert gap.margin > gap.difference  # not significant: the first level keeps it
    assert (
        level_winner({"remove": 0.5, "keep": 0.5 + gap.difference}, {}, 1e-3, lambda a, b: gap.margin)
        == "remove"
    )


def test_fewer_than_two_independent_blocks_give_no_bound() -> None:
    other = _hits([0.2], seed=0)
    better = np.ones_like(other)  # a huge lead, on one window length of data
    gap = recall_gap(better, other, BLOCK)
    assert gap.blocks == 1 and gap.standard_error is None and np.isinf(gap.margin)
    assert gap.as_dict()["margin"] is None  # valid JSON in bundle.json
    assert level_winner({"remove": 0.2, "keep": 1.0}, {}, 1e-3, lambda a, b: gap.margin) == "remove"


def test_identical_hits_tie_at_the_fixed_margin() -> None:
    hits = _hits([0.3] * 10, seed=2)
    gap = recall_gap(hits, hits, BLOCK)
    assert gap.difference == 0 and gap.standard_error == 0 and gap.margin == pytest.approx(TIE_MARGIN)


def test_the_later_false_alarm_check_still_comes_first() -> None:
    # remove flags far more of the later holdout: passed over whatever the margin says.
    chosen = level_winner(
        {"remove": 0.6, "keep": 0.5}, {"remove": 0.5, "keep": 0.001}, 1e-3, lambda a, b: float("inf")
    )
    assert chosen == "keep"
