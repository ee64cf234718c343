from __future__ import annotations

import torch


def masked_diffusion_nelbo(log_probs: torch.Tensor, x0: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """MDLM's continuous-time NELBO per token (MDLM eq. 11): -alpha'_t / (1 - alpha_t) * log p_theta(x0 | x_t).

    ``weight`` is -alpha'_t / (1 - alpha_t) (``NoiseSchedule.masked_nelbo_weight``: 1/t under the
    log-linear schedule), per sequence [B] or per token [B, L] (BD3-LM draws one t per block).
    With SUBS, unmasked positions carry log 1 = 0, so only masked tokens contribute.
    """
    log_p = torch.gather(log_probs, -1, x0.unsqueeze(-1)).squeeze(-1)
    if weight.dim() == 1:
        weight = weight[:, None]
    return -log_p * weight


__all__ = ["masked_diffusion_nelbo"]
