"""The assemble stage: each member's scorer with its term scales, the automatic choice of weights, one graph
for all members, and the score's definition for bundle.json."""

from __future__ import annotations

from torch import nn

from edge_agent.bundle import MemberScale, ScoreDefinition
from trainer import scorer_graph
from trainer.auto_score import WeightChoice, choose_for_fit, scorer_for
from trainer.config import TrainConfig
from trainer.fit import TrainedNets
from trainer.release_gate import gated
from trainer.windows import WindowSets


def assemble_scorer(
    members: list[TrainedNets], windows: WindowSets, config: TrainConfig
) -> tuple[nn.Module, list[scorer_graph.ScorerModule], WeightChoice | None]:
    """The graph to export (one member, or their mean), its members, and the weight choice (fit.auto)."""
    member_scorers = [scorer_for(nets, windows, config) for nets in members]
    choice = choose_for_fit(member_scorers, windows, config) if config.fit.auto else None
    if choice is not None:
        member_scorers = [member.reweighted(choice.weights) for member in member_scorers]
    member_scorers = [gated(member, windows, config) for member in member_scorers]
    scorer: nn.Module = (
        member_scorers[0] if len(member_scorers) == 1 else scorer_graph.MeanScorer(member_scorers)
    )
    return scorer, member_scorers, choice


def level_left_out(members: list[scorer_graph.ScorerModule], channels: list[str]) -> list[str]:
    """The channels any member leaves out of the level term (`score_scales.drifting_level_channels`)."""
    indices = sorted({c for member in members for c in member.term_scales.level_left_out})
    return [channels[c] for c in indices]


def score_definition(
    members: list[scorer_graph.ScorerModule], seeds: list[int], channels: list[str]
) -> ScoreDefinition:
    """The first member's scales at the top level (as a one-fit bundle has them), every member's below."""
    scales = [
        MemberScale(
            seed=seed,
            channel_residual_scale=member.channel_residual_scale.flatten().tolist(),
            feature_residual_scale=member.feature_residual_scale,
            latent_distance_scale=member.tails["latent"] if member.latent_distance is not None else None,
            term_tails=dict(member.tails),
        )
        for member, seed in zip(members, seeds, strict=True)
    ]
    first = members[0]
    weights = first.weights
    return ScoreDefinition(
        window_level="remove" if first.terms.remove_level else "keep",
        formula=(scorer_graph.__doc__ or "").split("\n\n", 1)[1].strip(),
        feature_weight=weights.feature,
        channel_residual_scale=scales[0].channel_residual_scale,
        feature_residual_scale=scales[0].feature_residual_scale,
        latent_weight=weights.latent,
        latent_distance_scale=scales[0].latent_distance_scale,
        term_weights={
            "reconstruction": weights.reconstruction,
            "local": weights.local,
            "level": weights.level,
            "variability": weights.variability,
            "feature": weights.feature,
            "latent": weights.latent,
        },
        term_tails=dict(first.tails),
        local_half_life_steps=weights.local_half_life_steps,
        variability_steps=first.change_steps,
        members=scales if len(scales) > 1 else [],
        level_left_out=level_left_out(members, channels),
    )
