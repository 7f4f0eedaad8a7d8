"""The weight choice's tie rule: recall first, then what the later holdout says, then preference order."""

from __future__ import annotations

from trainer.auto_score import TIE_MARGIN, CandidateEvidence, weight_winner


def _candidate(name: str, recall: float, later: float | None) -> CandidateEvidence:
    return CandidateEvidence(name, {}, 1.0, recall, {}, later)


def test_within_the_margin_the_candidate_that_flags_less_of_the_later_holdout_wins() -> None:
    evidence = [
        _candidate("all_terms", 0.398, 0.014),
        _candidate("no_level", 0.401, 0.007),
        _candidate("with_latent", 0.400, 0.009),
    ]
    assert weight_winner(evidence).name == "no_level"


def test_a_lower_later_rate_does_not_buy_recall_beyond_the_margin() -> None:
    evidence = [_candidate("all_terms", 0.50, 0.02), _candidate("shape", 0.50 - 2 * TIE_MARGIN, 0.0)]
    assert weight_winner(evidence).name == "all_terms"


def test_equal_later_rates_or_none_measured_keep_the_preference_order() -> None:
    tied = [_candidate("all_terms", 0.40, 0.0), _candidate("no_level", 0.405, 0.0)]
    assert weight_winner(tied).name == "all_terms"
    unmeasured = [_candidate("all_terms", 0.40, None), _candidate("no_level", 0.405, None)]
    assert weight_winner(unmeasured).name == "all_terms"
