"""Training-time samplers for t: one draw per sequence, or one per block (BD3-LM), in [eps_min, eps_max]."""

from __future__ import annotations

import torch


class TimeSampler:
    """Draws t of shape ``(batch_size,)``, or ``(batch_size, num_blocks)`` when ``num_blocks`` is
    given, uniformly on [eps_min, eps_max] (default [eps, 1]).

    ``antithetic=True`` is MDLM's low-discrepancy sampler: one draw in each of the n strata of
    [0, 1), u_i = (u_i + i) / n mod 1, with n the number of draws (BD3-LM stratifies over the
    B x num_blocks cells). It lowers the variance of the batch's loss and keeps every t marginally
    uniform. eps_min = eps_max = 1 is BD3-LM's fully masked training (t = 1 exactly). t is never 0
    (with eps = 0 a draw u = 0 gives the smallest positive float instead).
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
        t = (self.eps_max - self.eps) * u + self.eps
        if self.eps == 0.0:
            # u = 0 is a possible draw; t = 0 (clean data) has probability 0 under U[0, 1] and an
            # infinite loss weight, so it becomes the smallest positive float
            t = t.clamp_min(torch.finfo(t.dtype).tiny)
        return t


__all__ = ["TimeSampler"]
