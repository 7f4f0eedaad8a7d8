"""A scorer graph with fresh weights and unit scales: for tests of the graph's shape, not of its values."""

from __future__ import annotations

import torch

from trainer.networks import Critic, Encoder, Generator
from trainer.scorer_graph import ScorerModule, ScoreTerms, ScoreWeights, TermScales


def fresh_scorer(latent: int, channels: int, window: int, width: int, seed: int) -> ScorerModule:
    """Encoder, generator and critic drawn from `seed`, default weights, every scale 1."""
    torch.manual_seed(seed)
    terms = ScoreTerms(
        Encoder(latent, channels, window, width),
        Generator(latent, channels, window, width),
        Critic(channels, window, width),
    )
    scales = TermScales.unit(channels, window)
    return ScorerModule(terms, torch.zeros(channels), torch.ones(channels), scales, ScoreWeights()).eval()
