"""Training-time samplers for t: one draw per sequence, or one per block (BD3-LM), in [eps_min, eps_max]."""

from __future__ import annotations

import torch


class TimeSampler:
    """Draws t of shape ``(batch_size,)``, or ``(batch_size, num_blocks)`` when ``num_blocks`` is
    given, uniformly on [eps_min, eps_max] (default [eps, 1]).

    ``antithetic=True`` is MDLM's low-discrepancy sampler: one draw in each of the n strata of
    [0, 1), u_i = (u_i + i) / n mod 1, with n the number of draws (BD3-LM stratifies over the
    B x num_blocks cells). It lowers the variance of the batch's loss and keeps every t marginally
    uniform. eps_min = eps_max = 1 is BD3-LM's fully masked training (t = 1 exactly).
    """

    def __init__(self, eps: float = 1e-3, antithetic: bool = False, eps_max: float = 1.0):
        if not 0.0 <= eps <= eps_max <= 1.0 or eps == eps_max < 1.0:
            raise ValueError(f"sampling_eps must satisfy 0 <= eps_min < eps_max <= 1 (or both 1), got {eps}, {eps_max}")
        self.eps = eps
        self.eps_max = eps_max
        self.antithetic = antithetic

    def __call__(
        self, batch_size: int, device=None, generator=None, dtype=torch.float32, num_blocks: int | None = None
    ) -> torch.Tensor:
        shape = (batch_size,) if num_blocks is None else (batch_size, num_blocks)
        n = batch_size if num_blocks is None else batch_size * num_blocks
        u = torch.rand(shape, device=device, generator=generator, dtype=dtype)
        if self.antithetic:
            offset = (torch.arange(n, device=device, dtype=dtype) / n).view(shape)
            u = (u / n + offset) % 1
        if self.eps >= 1.0:
            return torch.ones_like(u)
        return (self.eps_max - self.eps) * u + self.eps


__all__ = ["TimeSampler"]
