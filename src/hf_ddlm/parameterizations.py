"""Turning backbone logits into each method's native output."""

from __future__ import annotations

import math

import torch

# MDLM's finite "-inf" (-1e6; float16: neg_infinity): log-probs equal the official ones bitwise
from .categorical import NEG_INFINITY, fill_rows_, neg_infinity  # noqa: F401  (NEG_INFINITY re-exported)
from .processes.schedules import expm1_sigma


def subs_log_probs(logits: torch.Tensor, x_t: torch.Tensor, mask_token_id: int) -> torch.Tensor:
    """MDLM's SUBS parameterization (MDLM sec. 3.2.3): log p_theta(x0 | x_t) [B, L, V].

    Zero masking probability: the mask logit gets -1e6 before normalisation. Carry-over
    unmasking: an unmasked position's row is one-hot at its token (0 there, -1e6 elsewhere).
    In float16, which cannot hold -1e6, the finite log 0 is ``neg_infinity(torch.float16)``.
    """
    return _SubsLogProbs.apply(logits, x_t, mask_token_id)


class _SubsLogProbs(torch.autograd.Function):
    """SUBS with a hand-written backward, so that a training step builds three [B, L, V] tensors
    instead of about ten (they dominate the step of a small model on CPU). The forward performs
    the official float operations (add the -1e6 bias, subtract logsumexp), so values, and
    gradients, equal those of the plain autograd composition bitwise."""

    @staticmethod
    def forward(ctx, logits, x_t, mask_token_id):
        neg = neg_infinity(logits.dtype)
        bias = torch.zeros(logits.shape[-1], dtype=logits.dtype, device=logits.device)
        bias[mask_token_id] = neg
        log_probs = logits + bias  # a fresh tensor: the caller's logits stay untouched
        log_probs.sub_(torch.logsumexp(log_probs, dim=-1, keepdim=True))
        unmasked = x_t != mask_token_id
        fill_rows_(log_probs, unmasked, neg)
        # 0 at x_t on the carried-over rows; a masked row gets its own value back (no
        # data-dependent shapes, so torch.compile and torch.export trace it)
        at_x_t = x_t.unsqueeze(-1)
        log_probs.scatter_(-1, at_x_t, torch.where(unmasked.unsqueeze(-1), 0.0, log_probs.gather(-1, at_x_t)))
        ctx.save_for_backward(log_probs, unmasked)
        return log_probs

    @staticmethod
    def backward(ctx, grad):
        log_probs, unmasked = ctx.saved_tensors
        # carried-over rows are constants (zero gradient); a masked row is a log-softmax of
        # logits + bias: d/dlogits = g - softmax * sum(g), softmax = exp(log_probs). Carried rows
        # are zeroed before the exp: exp(-1e6) takes exp's slow underflow path (~15x slower).
        grad_logits = fill_rows_(log_probs.clone(), unmasked, 0.0).exp_()  # the one [B, L, V] buffer
        grad_logits.mul_(grad.sum(dim=-1, keepdim=True).neg_()).add_(grad)
        return fill_rows_(grad_logits, unmasked, 0.0), None, None


def sedd_log_score(logits: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor, scale_by_sigma: bool) -> torch.Tensor:
    """SEDD's log concrete score log s_theta(x_t)_y ~ log p_t(y) / p_t(x_t) [B, L, V].

    ``scale_by_sigma`` (absorbing only) subtracts log(e^sigma - 1) + log(V - 1): by RADD's theorem 1
    the true absorbing score at a masked position is p0(y | unmasked) / (e^sigma - 1), so the network
    only has to model p0 (a zero head starts at the uniform p0 = 1/(V-1)). The entry at the current
    token is 0 (a ratio of 1).
    """
    if scale_by_sigma:
        # at sigma = 0 (t = 0, clean data) the absorbing score is infinite: e^sigma - 1 is floored at
        # the smallest positive float so that the output stays finite (the same value for sigma > 0)
        esigm1 = expm1_sigma(sigma)
        esigm1_log = esigm1.clamp_min(torch.finfo(esigm1.dtype).tiny).log().to(logits.dtype)[:, None, None]
        # the official two subtractions, the second in place on the fresh tensor (same rounding,
        # one [B, L, V] tensor fewer); then the zero at x_t in place too
        log_score = logits - esigm1_log
        log_score.sub_(math.log(logits.shape[-1] - 1))
        return log_score.scatter_(-1, x_t.unsqueeze(-1), 0.0)
    return torch.scatter(logits, -1, x_t.unsqueeze(-1), torch.zeros_like(logits[..., :1]))


__all__ = ["sedd_log_score", "subs_log_probs"]
