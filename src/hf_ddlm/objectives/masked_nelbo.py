from __future__ import annotations

import torch

from ..processes.schedules import NoiseLevel


def masked_diffusion_nelbo(log_probs: torch.Tensor, x0: torch.Tensor, level: NoiseLevel) -> torch.Tensor:
    """MDLM's continuous-time NELBO per token (MDLM eq. 11):
    -alpha'_t / (1 - alpha_t) * log p_theta(x0 | x_t) = dsigma / expm1(sigma) * (-log p_theta).

    Under the log-linear schedule the weight is exactly 1/t. With SUBS, unmasked positions carry
    log 1 = 0, so only masked tokens contribute.
    """
    log_p = torch.gather(log_probs, -1, x0.unsqueeze(-1)).squeeze(-1)
    weight = level.dsigma / torch.expm1(level.sigma)
    return -log_p * weight[:, None]
