"""First-hitting sampling of masked diffusion (Zheng et al. 2024, "Masked Diffusion Models are
Secretly Time-Agnostic Masked Models and Exploit Inaccurate Categorical Sampling", sec. 4), the
default sampler of BD3-LM.

With mask probability proportional to t, a token masked at time t is unmasked, going backwards, at
a time uniform on [0, t], independently of the others. Among n masked tokens the first one is
therefore revealed at s = t u^(1/n) (the largest of n uniforms), it is a uniformly chosen masked
position, and it takes a value drawn from p_theta(x0 | x_t) there. Nothing else happens between t
and s, so one network evaluation reveals exactly one token and the chain is exact in distribution:
no time grid, n NFEs for n masked tokens.

The official implementation draws with numpy and supports batch size 1; here every row has its own
time t and its own count n (per-sample times), so a batch is sampled in one call.
"""

from __future__ import annotations

import torch

from ..categorical import check_nucleus_p, official_nucleus, sample_categorical
from ..processes.graphs import Graph
from ..processes.schedules import LogLinearSchedule, NoiseSchedule
from .base import Sampler, SamplerOutput, register_sampler


@register_sampler
class FirstHittingSampler(Sampler):
    """Reveals one masked token per step at the first-hitting time. ``nucleus_p`` is the official
    nucleus (applied to p_theta in float64, as the official code upcasts before sampling); the
    loop's ``top_p`` is HF's variant. It implements the first-hitting protocol of ``Sampler``: block
    decoding calls ``next_time``, ``choose_positions`` and ``reveal``; other loops call ``step``."""

    name = "first_hitting"
    needs = "log_probs"
    first_hitting = True

    def __init__(self, graph: Graph, schedule: NoiseSchedule, nucleus_p: float = 1.0):
        super().__init__(graph, schedule)
        if not graph.absorbing:
            raise ValueError("the first-hitting sampler needs an absorbing graph")
        if not isinstance(schedule, LogLinearSchedule):
            raise ValueError(
                "the first-hitting time s = t u^(1/n) needs a mask probability proportional to t (loglinear)"
            )
        self.nucleus_p = check_nucleus_p(nucleus_p)

    def next_time(
        self, t: torch.Tensor, x_t: torch.LongTensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """s = t u^(1/n) per row, n = masked tokens of the row (rows with none keep t)."""
        n = (x_t == self.graph.mask_token_id).sum(-1)
        u = torch.rand(t.shape, generator=generator, device=t.device, dtype=torch.float64)
        s = t.double() * u ** (1.0 / n.clamp_min(1).double())
        return torch.where(n > 0, s, t.double()).to(t.dtype)

    def choose_positions(self, x_t: torch.LongTensor, generator: torch.Generator | None = None) -> torch.LongTensor:
        """The position revealed next, uniform among each row's masked ones ([B, 1]). It does not
        depend on p_theta, so the network only needs its output there (``reveal``)."""
        masked = x_t == self.graph.mask_token_id
        order = torch.rand(x_t.shape, generator=generator, device=x_t.device).masked_fill(~masked, -1.0)
        return order.argmax(-1, keepdim=True)

    def reveal(
        self,
        log_probs: torch.Tensor,
        x_t: torch.LongTensor,
        positions: torch.LongTensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """Draws the token at ``positions`` [B, 1] from ``log_probs`` [B, V] (p_theta there, in
        float64 as the official code) and writes it; rows without a masked token are unchanged."""
        probs = official_nucleus(log_probs.double().exp(), self.nucleus_p)
        token = sample_categorical(probs, generator, uniform_noise)
        reveal = torch.zeros_like(x_t, dtype=torch.bool).scatter(-1, positions, True) & (
            x_t == self.graph.mask_token_id
        )
        return SamplerOutput(torch.where(reveal, token[:, None], x_t), probs)

    def step(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        s: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """``choose_positions`` then ``reveal`` with the full output [B, L, V]. ``probs`` [B, V] are
        the weights of the draw; ``uniform_noise`` is [B, V] (or [B, L, V], read at the position)."""
        positions = self.choose_positions(x_t, generator)
        chosen = model_output.gather(1, positions[..., None].expand(-1, 1, model_output.shape[-1]))[:, 0]
        if uniform_noise is not None and uniform_noise.dim() == 3:
            uniform_noise = uniform_noise.gather(1, positions[..., None].expand(-1, 1, uniform_noise.shape[-1]))[:, 0]
        return self.reveal(chosen, x_t, positions, generator, uniform_noise)

    def denoise(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """Any masked token left: the argmax of p_theta (never needed by the first-hitting loop)."""
        x0 = model_output.argmax(dim=-1)
        return SamplerOutput(torch.where(x_t == self.graph.mask_token_id, x0, x_t), model_output.exp())


__all__ = ["FirstHittingSampler"]
