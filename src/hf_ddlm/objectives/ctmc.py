"""The continuous-time ELBO of Campbell et al. (NeurIPS 2022, "A Continuous Time Framework for
Discrete Denoising Models"), for the x0-parameterised reverse rate

    R-hat_theta(x, x with d -> y) = R_t(y, x^d) sum_{x0} p~(x0^d | x) q_t(y | x0) / q_t(x^d | x0),

with R_t = dsigma(t) Q and Q a graph (``processes.graphs``). Up to a constant,

    L_CT = int_0^1 E_{x ~ q_t(.|x0)} E_{x~ ~ r_t(.|x)} [ sum_y R-hat_theta(x, y) - Z_t(x) log R-hat_theta(x~, x) ] dt,

Z_t(x) the total forward exit rate of x and r_t(x~|x) = R_t(x, x~)/Z_t(x) (their Proposition 2).
Two estimators, both one network call per sequence:

* ``ctmc_exact_elbo``: the signal term summed over every forward jump out of x (by the time-reversal
  identity q_t(x|x0) R_t(x, x~) = q_t(x~|x0) R-hat_{t|0}(x~, x)); together with the constants that
  Campbell et al. drop, the integrand is sum_y R_t(y, x)[s_y - r_y + r_y log(r_y / s_y)] >= 0, zero at
  the true posterior (s, r: model and conditional ratios). Unbiased; the likelihood API uses it.
* ``ctmc_one_pass_loss``: the estimator of the official code (``one_forward_pass=True``): the network
  runs once at x~ (a draw of x ~ q_t followed by one forward jump); the signal term is summed over
  every x that could have jumped to x~ (their Rao-Blackwellisation) and the regulariser is taken at
  x~ instead of x, an approximation.
"""

from __future__ import annotations

import torch

from ..categorical import neg_infinity
from ..processes.graphs import Graph, uniform_ratio_offset
from ..processes.schedules import NoiseLevel
from .score_entropy import denoising_score_entropy


def ctmc_exact_elbo(log_p0, x0, x_t, level: NoiseLevel, graph: Graph) -> torch.Tensor:
    """The CT-ELBO integrand per token [B, L] at (t, x_t ~ q_t(.|x0)), constants included.

    It equals SEDD's denoising score entropy evaluated at the ratios implied by p~(x0 | x_t); for
    uniform noise it is computed in the closed form of ``uniform_ct_elbo`` (one pass over V)."""
    dtype = torch.promote_types(log_p0.dtype, torch.float32)
    if not graph.absorbing:
        return uniform_ct_elbo(log_p0.to(dtype), x0, x_t, level, graph.vocab_size)
    log_ratio = graph.log_ratio_from_x0(log_p0.to(dtype), x_t, level.sigma.to(dtype))
    return denoising_score_entropy(log_ratio, x0, x_t, level, graph)


class SumLogAffineExp(torch.autograd.Function):
    """sum_v log(c0 + c1 exp(l_v)) over the last dimension, for l [..., V] and c0, c1 [...].

    Plain autograd would keep two [..., V] intermediates (exp(l), and c0 + c1 exp(l) for the log)
    until the backward pass. This keeps only l, which the log-softmax that produced it keeps anyway,
    and recomputes them in backward: d/dl_v = c1 p_v / (c0 + c1 p_v), d/dc0 = sum_v 1 / (c0 + c1 p_v),
    d/dc1 = sum_v p_v / (c0 + c1 p_v), with p = exp(l). The forward works in place on one buffer."""

    @staticmethod
    def forward(ctx, log_p, c0, c1):
        ctx.save_for_backward(log_p, c0, c1)
        affine = log_p.exp().mul_(c1.unsqueeze(-1)).add_(c0.unsqueeze(-1))
        return affine.log_().sum(-1)

    @staticmethod
    def backward(ctx, grad):
        log_p, c0, c1 = ctx.saved_tensors
        p = log_p.exp()
        inv = p.mul(c1.unsqueeze(-1)).add_(c0.unsqueeze(-1)).reciprocal_()  # 1 / (c0 + c1 p)
        grad_c0 = inv.sum(-1) * grad if ctx.needs_input_grad[1] else None
        inv.mul_(p)  # p / (c0 + c1 p)
        grad_c1 = inv.sum(-1) * grad if ctx.needs_input_grad[2] else None
        grad_log_p = inv.mul_((c1 * grad).unsqueeze(-1)) if ctx.needs_input_grad[0] else None
        return grad_log_p, grad_c0, grad_c1


def uniform_ct_elbo(log_p0, x0, x_t, level: NoiseLevel, vocab_size: int) -> torch.Tensor:
    """sum_{y != x} (dsigma/N) [s_y - r_y + r_y log r_y - r_y log s_y] for uniform noise, per token.

    The model ratio is s_y = c0 + c1 p~(y) with c0 = (1 - p_x) + p_x E/(N + E), c1 = N/E
    (``UniformGraph.log_ratio_from_x0``); the conditional ratio r_y = q_t(y|x0)/q_t(x|x0) is E/(N + E)
    for every y when x = x0, and 1 + N/E at y = x0, 1 elsewhere, when x != x0. Everything but
    sum_y log s_y is a gather, so the only [B, L, V] work is that sum (and the tensors autograd keeps
    for it), the same footprint as the absorbing loss.
    """
    n = vocab_size
    dtype = log_p0.dtype
    sigma, dsigma = level.sigma.to(dtype)[:, None], level.dsigma.to(dtype)[:, None]
    esigm1 = torch.expm1(sigma).clamp_min(1e-30)
    log_px = torch.gather(log_p0, -1, x_t.unsqueeze(-1)).squeeze(-1).clamp_max(0.0)
    p_x = log_px.exp()
    c0 = uniform_ratio_offset(log_px, esigm1, n)
    c1 = n / esigm1
    # sum_{y != x} log s_y = sum_y log(c0 + c1 p_y) - log(c0 + c1 p_x)
    sum_log_s = SumLogAffineExp.apply(log_p0, c0, c1.expand_as(c0)) - torch.log(c0 + c1 * p_x)
    sum_s = (n - 1) * c0 + (1 - p_x) * c1
    same = x_t == x0
    rho = esigm1 / (n + esigm1)  # u/w
    log_s_x0 = torch.log(c0 + c1 * torch.gather(log_p0, -1, x0.unsqueeze(-1)).squeeze(-1).exp())
    sum_r = torch.where(same, (n - 1) * rho, 1 + c1 + n - 2)
    sum_rlogr = torch.where(same, (n - 1) * rho * torch.log(rho), (1 + c1) * torch.log1p(c1))
    sum_rlogs = torch.where(same, rho * sum_log_s, sum_log_s + c1 * log_s_x0)
    return dsigma / n * (sum_s - sum_r + sum_rlogr - sum_rlogs)


def _exit_rate(graph: Graph, tokens: torch.Tensor) -> torch.Tensor:
    """-Q(a, a): the unit-rate exit rate of one token (uniform (N-1)/N; absorbing 1, 0 for the mask)."""
    if graph.absorbing:
        return (tokens != graph.mask_token_id).float()
    return torch.full(tokens.shape, (graph.vocab_size - 1) / graph.vocab_size, device=tokens.device)


def forward_jump(x_t, loss_mask, graph: Graph, generator=None) -> torch.Tensor:
    """x~ ~ r_t(. | x_t): one jump of the forward chain. The dimension is drawn with probability
    proportional to its exit rate (among ``loss_mask`` positions), the new token proportionally to
    Q(x^d, .). Rows with no possible jump (e.g. all masked) are returned unchanged."""
    b, length = x_t.shape
    z = _exit_rate(graph, x_t) * loss_mask
    has = z.sum(-1) > 0
    u = torch.rand(b, length, generator=generator, device=x_t.device)
    d = torch.where(z > 0, z / (-(u + 1e-20).log()), -1.0).argmax(-1)  # exponential race over dimensions
    if graph.absorbing:
        new = torch.full((b,), graph.mask_token_id, device=x_t.device)
    else:  # uniform over the other N - 1 tokens
        old = x_t[torch.arange(b), d]
        new = (
            old + torch.randint(1, graph.vocab_size, (b,), generator=generator, device=x_t.device)
        ) % graph.vocab_size
    out = x_t.clone()
    out[torch.arange(b)[has], d[has]] = new[has]
    return out


def ctmc_one_pass_loss(log_p0, x0, x_tilde, level: NoiseLevel, graph: Graph, loss_mask) -> torch.Tensor:
    """Campbell et al.'s one-forward-pass L_CT estimator per token [B, L] (the per-sequence signal
    term is spread over positions; the sum over positions is the sequence's estimate).

    With R-hat_0(x~, d, v) = R_t(v, x~^d) q_t(v|x0^d)/q_t(x~^d|x0^d) the conditional reverse rates
    and Z(x~ with d -> v) the exit rate of the state that jumped:
        sum_d sum_v R-hat_theta(x~, d, v)
        - [sum_{d,v} R-hat_0 log R-hat_theta(x~, d, v)] / [sum_{d,v} R-hat_0 / Z(x~ with d -> v)].
    """
    dtype = torch.promote_types(log_p0.dtype, torch.float32)
    log_p0 = log_p0.to(dtype)
    sigma = level.sigma.to(dtype)[:, None, None]
    dsigma = level.dsigma.to(dtype)[:, None, None]
    mask = loss_mask.to(dtype)
    v = graph.vocab_size
    neg = neg_infinity(dtype)
    at_x = torch.zeros_like(log_p0, dtype=torch.bool).scatter(-1, x_tilde.unsqueeze(-1), True)
    # forward rates into x~^d from every v: R_t(v, x~^d) = dsigma Q(x~^d <- v)
    if graph.absorbing:
        into = (x_tilde == graph.mask_token_id).unsqueeze(-1) & ~at_x
        into = into & (torch.arange(v, device=x0.device) != graph.mask_token_id)
        log_rate_in = torch.where(into, dsigma.log(), neg)
    else:
        log_rate_in = torch.where(at_x, neg, (dsigma / v).log())
    # model: log R-hat_theta(x~, d, v)
    log_rate_theta = log_rate_in + graph.log_ratio_from_x0(log_p0, x_tilde, level.sigma.to(dtype))
    regulariser = torch.where(at_x, 0.0, log_rate_theta.exp()).sum(-1)
    # conditional: R-hat_0 = R(v, x~^d) q(v|x0)/q(x~^d|x0), with q(.|x0) = alpha onehot + (1-alpha) pi
    onehot0 = torch.nn.functional.one_hot(x0, v).to(dtype)
    alpha = torch.exp(-sigma)
    if graph.absorbing:
        pi = (torch.arange(v, device=x0.device) == graph.mask_token_id).to(dtype)
    else:
        pi = torch.full((v,), 1.0 / v, dtype=dtype, device=x0.device)
    q = alpha * onehot0 + (-torch.expm1(-sigma)) * pi
    q_at = torch.gather(q, -1, x_tilde.unsqueeze(-1))
    rate0 = torch.where(at_x, 0.0, log_rate_in.exp() * q / q_at.clamp_min(1e-30)) * mask.unsqueeze(-1)
    # Z of the state x~ with d -> v: Z(x~) - dsigma z(x~^d) + dsigma z(v)
    z_tilde = (_exit_rate(graph, x_tilde) * mask).sum(-1)[:, None, None]
    z_cur = _exit_rate(graph, x_tilde).unsqueeze(-1)
    z_tok = _exit_rate(graph, torch.arange(v, device=x0.device)).to(dtype)
    z_prev = dsigma * (z_tilde - z_cur + z_tok)
    norm = (rate0 / z_prev.clamp_min(1e-30)).sum((-1, -2))  # [B]
    signal = (rate0 * torch.where(rate0 > 0, log_rate_theta, 0.0)).sum(-1)  # [B, L]
    signal = torch.where(norm[:, None] > 0, signal / norm.clamp_min(1e-30)[:, None], 0.0)
    return (regulariser - signal) * mask


__all__ = ["SumLogAffineExp", "ctmc_exact_elbo", "ctmc_one_pass_loss", "forward_jump", "uniform_ct_elbo"]
