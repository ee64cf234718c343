"""Entropy-bounded unmasking (Ben-Hamu et al. 2025, "Accelerated Sampling from Masked Diffusion
Models via Entropy Bounded Unmasking", the EB-sampler; the sampler of transformers' DiffusionGemma)."""

from __future__ import annotations

import math
import numbers

import torch

from ..processes.graphs import Graph
from ..processes.schedules import NoiseSchedule
from .base import register_sampler
from .confidence import ConfidenceSampler, token_entropy


@register_sampler
class EntropyBoundedSampler(ConfidenceSampler):
    """Commits the masked positions of lowest entropy while their joint dependence stays bounded.

    With H_(1) <= H_(2) <= ... the entropies of p_theta(. | x_t) at a row's masked positions, the
    step commits the largest prefix U = {(1), ..., (k)} with

        sum_{i in U} H_i - max_{i in U} H_i <= gamma,

    the paper's bound on the mutual information between the committed tokens (their joint is then
    close to the product of marginals the step draws from). The first position always qualifies,
    so every row with a mask commits at least one token per step; a larger ``gamma`` commits more
    per step (fewer network calls, more bias). ``num_inference_steps`` is a budget: masks left when
    the grid ends are committed by ``denoise`` (the loop's noise removal).

    Args:
        gamma: the entropy budget in nats, > 0.
        deterministic: propose the argmax token (True) or a draw from p_theta (False, the paper's).
    """

    name = "entropy_bounded"
    orderings = ("entropy",)

    def __init__(self, graph: Graph, schedule: NoiseSchedule | None, gamma: float = 1.0, deterministic: bool = False):
        super().__init__(graph, schedule, tokens_per_step=None, ordering="entropy", deterministic=deterministic)
        if (
            not isinstance(gamma, numbers.Real)
            or isinstance(gamma, bool)
            or not (float(gamma) > 0 and math.isfinite(gamma))
        ):
            raise ValueError(f"gamma must be a finite number > 0 (nats), got {gamma!r}")
        self.gamma = float(gamma)

    def _select(self, log_p, masked, log_p_proposal, t, s):
        entropy = token_entropy(log_p).double().masked_fill(~masked, torch.inf)
        sorted_entropy, order = entropy.sort(dim=-1, stable=True)
        finite = sorted_entropy.isfinite()
        # ascending: the max of a prefix is its last entry, so the bound is the cumulative sum before it
        before = sorted_entropy.masked_fill(~finite, 0.0).cumsum(-1) - sorted_entropy.masked_fill(~finite, 0.0)
        keep = finite & (before <= self.gamma)
        return torch.zeros_like(masked).scatter(-1, order, keep) & masked


__all__ = ["EntropyBoundedSampler"]
