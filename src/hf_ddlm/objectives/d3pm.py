"""D3PM's variational bound and hybrid loss (Austin et al. 2021, eqs. 3-5)."""

from __future__ import annotations

import torch

from ..processes.discrete_time import StepCoefficients, d3pm_reverse_log_probs, posterior_log_probs


def d3pm_vb_term(log_x0, x0, x_t, coef: StepCoefficients, log_pi, parameterization: str = "mixture") -> torch.Tensor:
    """L_k = KL(q(x_{k-1} | x_k, x0) || p_theta(x_{k-1} | x_k)) per token [B, L] (eq. 3's sum terms).

    At k = 1 the posterior is onehot(x0) (alpha_bar_0 = 1), so the same expression is the decoder
    term -log p_theta(x0 | x_1). Computed in float32 at least; clipped at 0 as the official code
    does (rounding can make a KL of identical distributions slightly negative).
    """
    log_x0 = log_x0.to(torch.promote_types(log_x0.dtype, torch.float32))
    log_q = posterior_log_probs(x0, x_t, coef, log_pi.to(log_x0.dtype))
    log_p = d3pm_reverse_log_probs(log_x0, x_t, coef, log_pi.to(log_x0.dtype), parameterization)
    return (log_q.exp() * (log_q - log_p)).sum(-1).clamp_min(0.0)


def d3pm_hybrid_loss(
    log_x0,
    x0,
    x_t,
    coef: StepCoefficients,
    log_pi,
    num_timesteps: int,
    hybrid_loss_coeff: float,
    parameterization: str = "mixture",
) -> torch.Tensor:
    """T * (L_k + lambda * CE_k) per token [B, L], for k ~ Uniform{1..T}.

    The paper's hybrid loss is L_vb + lambda E_t[-log p~(x0 | x_t)] (eq. 5). Both official codes
    minimise the single-step L_k + lambda CE_k (google-research d3pm ``training_losses`` /
    ``compute_kl_reverse_process``), so that is how lambda weighs CE in the published settings
    (0.01 text-absorbing, 0 text-uniform, 0.001 CIFAR-10). We multiply by T: the weighting is
    unchanged and, with lambda = 0, the loss is the unbiased estimate of L_vb minus its prior term.
    """
    vb = d3pm_vb_term(log_x0, x0, x_t, coef, log_pi, parameterization)
    if hybrid_loss_coeff == 0:
        return num_timesteps * vb
    ce = -torch.gather(log_x0.to(vb.dtype), -1, x0.unsqueeze(-1)).squeeze(-1)
    return num_timesteps * (vb + hybrid_loss_coeff * ce)


__all__ = ["d3pm_hybrid_loss", "d3pm_vb_term"]
