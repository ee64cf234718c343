"""Turning backbone logits into each method's native output."""

from __future__ import annotations

import math

import torch

from .processes.schedules import expm1_sigma

NEG_INFINITY = -1e6  # MDLM's finite "-inf": reproduced so log-probs equal the official ones bitwise


def subs_log_probs(logits: torch.Tensor, x_t: torch.Tensor, mask_token_id: int) -> torch.Tensor:
    """MDLM's SUBS parameterization (MDLM sec. 3.2.3): log p_theta(x0 | x_t) [B, L, V].

    Zero masking probability: the mask logit gets -1e6 before normalisation. Carry-over
    unmasking: an unmasked position's row is one-hot at its token (0 there, -1e6 elsewhere).
    """
    bias = torch.zeros(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    bias[mask_token_id] = NEG_INFINITY
    logits = logits + bias
    log_probs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    carry = torch.full_like(log_probs, NEG_INFINITY).scatter(-1, x_t.unsqueeze(-1), 0.0)
    return torch.where((x_t != mask_token_id).unsqueeze(-1), carry, log_probs)


def sedd_log_score(logits: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor, scale_by_sigma: bool) -> torch.Tensor:
    """SEDD's log concrete score log s_theta(x_t)_y ~ log p_t(y) / p_t(x_t) [B, L, V].

    ``scale_by_sigma`` (absorbing only) subtracts log(e^sigma - 1) + log(V - 1): by RADD's theorem 1
    the true absorbing score at a masked position is p0(y | unmasked) / (e^sigma - 1), so the network
    only has to model p0 (a zero head starts at the uniform p0 = 1/(V-1)). The entry at the current
    token is 0 (a ratio of 1).
    """
    if scale_by_sigma:
        esigm1_log = expm1_sigma(sigma).log().to(logits.dtype)[:, None, None]
        logits = logits - esigm1_log - math.log(logits.shape[-1] - 1)
    return torch.scatter(logits, -1, x_t.unsqueeze(-1), torch.zeros_like(logits[..., :1]))
