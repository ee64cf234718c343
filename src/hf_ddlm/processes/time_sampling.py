"""Training-time samplers for t: one draw per sequence (or per block), in [eps, 1]."""

from __future__ import annotations

import torch


class TimeSampler:
    """Draws t of shape ``(batch_size,)`` uniformly on [eps, 1].

    ``antithetic=True`` is MDLM's low-discrepancy sampler: one draw in each of the ``batch_size``
    strata of [0, 1), t_i = eps + (1 - eps) * ((u_i + i) / n mod 1). It lowers the variance of
    the batch's loss and keeps every t marginally uniform.
    """

    def __init__(self, eps: float = 1e-3, antithetic: bool = False):
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"sampling_eps must be in [0, 1), got {eps}")
        self.eps = eps
        self.antithetic = antithetic

    def __call__(self, batch_size: int, device=None, generator=None, dtype=torch.float32) -> torch.Tensor:
        u = torch.rand(batch_size, device=device, generator=generator, dtype=dtype)
        if self.antithetic:
            offset = torch.arange(batch_size, device=device, dtype=dtype) / batch_size
            u = (u / batch_size + offset) % 1
        return (1 - self.eps) * u + self.eps
