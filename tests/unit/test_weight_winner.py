"""The weight choice's tie rule: recall first, then what the later holdout says, then preference order."""

from __future__ import annotations

from trainer.auto_score import CARRY_OVER_LIMIT, TIE_MARGIN, CandidateEvidence, weight_winner

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


def test_candidates_that_flag_most_of_the_later_holdout_are_passed_over_whatever_their_recall() -> None:
    """SMD machine-1-6 on its first 400 rows: every candidate with the level term flagged all later windows
    and won on recall with a threshold that left the bundle alarming on 99.7% of later normal rows."""
    evidence = [
        _candidate("all_terms", 0.167, 1.0),
        _candidate("no_level", 0.118, 0.0),
        _candidate("shape", 0.0, 0.0),
        _candidate("with_latent", 0.167, 1.0),
    ]
    assert weight_winner(evidence, BUDGET).name == "no_level"
    at_the_limit = [_candidate("all_terms", 0.167, CARRY_OVER_LIMIT), _candidate("no_level", 0.118, 0.0)]
    assert weight_winner(at_the_limit, BUDGET).name == "all_terms"


def test_when_no_candidate_carries_over_recall_decides_among_all() -> None:
    """TEP's 100 held-out rows: every candidate may flag them all; the choice must still be made."""
    evidence = [_candidate("all_terms", 0.30, 1.0), _candidate("no_level", 0.40, 0.9)]
    assert weight_winner(evidence, BUDGET).name == "no_level"
