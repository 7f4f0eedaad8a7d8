"""The weight choice's tie rule: recall first, then what the later holdout says, then preference order."""

from __future__ import annotations

from trainer.auto_score import TIE_MARGIN, CandidateEvidence, weight_winner
from trainer.calibrate import REGIME_GAP

BUDGET = 1e-3


def _candidate(name: str, recall: float, later: float | None) -> CandidateEvidence:
    return CandidateEvidence(name, {}, 1.0, recall, {}, later)


def test_within_the_margin_the_candidate_that_flags_less_of_the_later_holdout_wins() -> None:
    evidence = [
        _candidate("all_terms", 0.398, 0.014),
        _candidate("no_level", 0.401, 0.007),
        _candidate("with_latent", 0.400, 0.0072),
    ]
    # with_latent flags about as little as no_level (within the budget), so the earlier of the two wins
    assert weight_winner(evidence, BUDGET).name == "no_level"


def test_a_later_rate_lower_by_less_than_the_budget_keeps_the_preference_order() -> None:
    evidence = [_candidate("all_terms", 0.179, 0.0007), _candidate("no_level", 0.178, 0.0005)]
    assert weight_winner(evidence, BUDGET).name == "all_terms"
    assert weight_winner(evidence, 1e-4).name == "no_level"


def test_a_lower_later_rate_does_not_buy_recall_beyond_the_margin() -> None:
    evidence = [_candidate("all_terms", 0.50, 0.02), _candidate("shape", 0.50 - 2 * TIE_MARGIN, 0.0)]
    assert weight_winner(evidence, BUDGET).name == "all_terms"


def test_without_a_measured_later_rate_the_preference_order_decides() -> None:
    unmeasured = [_candidate("all_terms", 0.40, None), _candidate("no_level", 0.405, None)]
    assert weight_winner(unmeasured, BUDGET).name == "all_terms"


def _gapped(name: str, recall: float, later: float, gap: float) -> CandidateEvidence:
    return CandidateEvidence(name, {}, 1.0, recall, {}, later, gap)


def test_candidates_whose_holdout_sets_a_threshold_far_above_training_are_passed_over() -> None:
    """SMD machine-1-6 on its first 400 rows: every candidate with the level term set a threshold near 347 on
    a holdout where a climbing channel starts its climb, won on recall, and the bundle alarmed on 99.3% of
    the file's later normal rows."""
    evidence = [
        _gapped("all_terms", 0.167, 1.0, 74.0),
        _gapped("no_level", 0.118, 0.0, 0.44),
        _gapped("shape", 0.0, 0.0, 0.44),
        _gapped("with_latent", 0.167, 1.0, 66.2),
    ]
    assert weight_winner(evidence, BUDGET).name == "no_level"
    just_below = [_gapped("all_terms", 0.167, 1.0, REGIME_GAP * 0.99), _gapped("no_level", 0.118, 0.0, 0.44)]
    assert weight_winner(just_below, BUDGET).name == "all_terms"


def test_a_later_holdout_flagged_whole_at_a_modest_threshold_is_no_reason_to_pass_over() -> None:
    """TEP: every candidate with the level term flags all 100 held-out rows at a threshold of 8.3 from a
    training part that reads lower, and that score detects 92% of fault rows; recall must still decide."""
    evidence = [_gapped("all_terms", 0.514, 1.0, 2.22), _gapped("no_level", 0.306, 0.054, 1.1)]
    assert weight_winner(evidence, BUDGET).name == "all_terms"


def test_when_every_candidate_is_far_above_training_recall_decides_among_all() -> None:
    evidence = [_gapped("all_terms", 0.30, 1.0, 40.0), _gapped("no_level", 0.40, 0.9, 20.0)]
    assert weight_winner(evidence, BUDGET).name == "no_level"
