"""Threshold parallel decoding (Wu et al. 2025, "Fast-dLLM: Training-free Acceleration of Diffusion
LLM by Enabling KV Cache and Parallel Decoding", sec. 3.3, the threshold strategy)."""

from __future__ import annotations

import numbers

import torch

from ..processes.graphs import Graph
from ..processes.schedules import NoiseSchedule
from .base import register_sampler
from .confidence import ConfidenceSampler, commit_top


@register_sampler
class ThresholdSampler(ConfidenceSampler):
    """Commits, in one step, every masked position whose confidence exceeds ``threshold``.

    Fast-dLLM's rule: with c_i the confidence of masked position i (``"top_prob"``: the probability
    p_theta(y_i) of its proposal; ``"margin"``: top-1 minus top-2 probability), commit
    {i : c_i > threshold}, and at least the most confident position of every row that still has a
    mask, so each step makes progress. Their theorem 1: when every committed marginal exceeds
    1 / (n + 1), the product of the marginals' argmaxes is the joint's argmax; a high threshold keeps
    parallel commits close to sequential greedy decoding. ``num_inference_steps`` is a budget: masks
    left when the grid ends are committed by ``denoise`` (the loop's noise removal). Biased, as every
    confidence sampler (``confidence`` module docstring).

    Args:
        threshold: in (0, 1]; 1 commits only certain tokens (plus one per step).
        ordering: ``"top_prob"`` or ``"margin"`` (both in [0, 1]).
        deterministic: propose the argmax token (True, Fast-dLLM) or a draw from p_theta (False).
    """

    name = "threshold"
    orderings = ("top_prob", "margin")

    def __init__(
        self,
        graph: Graph,
        schedule: NoiseSchedule | None,
        threshold: float = 0.9,
        ordering: str = "top_prob",
        deterministic: bool = True,
    ):
        super().__init__(graph, schedule, tokens_per_step=None, ordering=ordering, deterministic=deterministic)
        if not isinstance(threshold, numbers.Real) or isinstance(threshold, bool) or not 0.0 < float(threshold) <= 1.0:
            raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}")
        self.threshold = float(threshold)

    def _select(self, log_p, masked, log_p_proposal, t, s):
        confidence = self._confidence(log_p, log_p_proposal)
        best = commit_top(confidence, masked, torch.ones_like(masked[:, 0], dtype=torch.long))
        return best | (masked & (confidence > self.threshold))


__all__ = ["ThresholdSampler"]
