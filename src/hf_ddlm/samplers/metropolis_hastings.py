"""Metropolis-Hastings with learned concrete-score ratios (Concrete Score Matching, sec. 4).

Proposal: uniform over the Hamming-1 neighbours, a position d and a token v != x^d; every state
has D (S - 1) neighbours, so the proposal is symmetric and the acceptance is
min(1, p(x')/p(x)) = min(1, 1 + c_theta(x)_{d,v}), with 1 + c_theta clamped at 0 (the L2 objective
does not keep the learned ratio positive). One proposal per sequence per step; a rejected step
leaves the state unchanged, so the generation loop reuses the network output (CSM has no time).
"""

from __future__ import annotations

import torch

from ..processes.graphs import Graph
from ..processes.schedules import NoiseSchedule
from .base import Sampler, SamplerOutput, register_sampler


@register_sampler
class MetropolisHastingsSampler(Sampler):
    """``num_inference_steps`` is the number of MH steps (>= 1); the times of the grid are unused.
    A step reads one entry of c_theta per sequence. With ``return_probs=True``, ``probs`` are the
    exact one-step transition probabilities: entry (d, v != x^d) is the
    probability of moving to that neighbour, entry (d, x^d) holds 1/D of the probability of staying."""

    name = "metropolis_hastings"
    needs = "concrete_score"

    def set_timesteps(
        self, num_inference_steps: int, t_min: float = 1e-5, device: torch.device | str | None = None
    ) -> torch.Tensor:
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(
                "num_inference_steps (the number of Metropolis-Hastings steps) must be an integer >= 1, "
                f"got {num_inference_steps!r}"
            )
        self.timesteps = torch.ones(num_inference_steps + 1, device=device)
        return self.timesteps

    def __init__(self, graph: Graph, schedule: NoiseSchedule | None, return_probs: bool = False):
        super().__init__(graph, schedule)
        self.return_probs = return_probs

    def step(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor | None = None,
        s: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        b, length, v = model_output.shape
        rows = torch.arange(b, device=x_t.device)
        d = torch.randint(0, length, (b,), generator=generator, device=x_t.device)
        new = (x_t[rows, d] + torch.randint(1, v, (b,), generator=generator, device=x_t.device)) % v
        u = torch.rand(b, generator=generator, device=x_t.device)
        accept = u < (1 + model_output[rows, d, new].float()).clamp(0.0, 1.0)  # only the proposed entry is read
        x_new = x_t.clone()
        x_new[rows[accept], d[accept]] = new[accept]
        probs = None
        if self.return_probs:
            move = (1 + model_output.float()).clamp(0.0, 1.0).scatter(-1, x_t.unsqueeze(-1), 0.0) / (length * (v - 1))
            stay = 1 - move.sum((-1, -2))
            probs = move.scatter(-1, x_t.unsqueeze(-1), (stay / length)[:, None, None].expand(b, length, 1))
        return SamplerOutput(x_new, probs)

    def denoise(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """MH has no noise to remove."""
        return SamplerOutput(x_t, None)


__all__ = ["MetropolisHastingsSampler"]
