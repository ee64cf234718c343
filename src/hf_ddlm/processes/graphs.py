"""Forward processes ("graphs", SEDD's word for the structure of the rate matrix Q).

The forward CTMC on one token has rate ``dsigma(t) * Q`` and transition ``exp(sigma(t) Q)``; the
sequence process applies it to every position independently. Everything here is closed form in
the per-token vocabulary: tensors are at most [..., V], never V x V.

Conventions (those of SEDD's ``graph_lib``): Q has columns that sum to zero; ``Q[y, x]`` is the
rate of jumping from x to y. For a state x:

* ``transp_transition(x, sigma)[y] = exp(sigma Q)[x, y]`` (row x of the transition),
* ``reverse_rate(x, score)[y] = score_y * Q[x, y]`` for y != x, the diagonal making it sum to 0:
  the reverse rate of the time-reversed chain, Q-bar(y, x) = s(x)_y Q(x, y) (SEDD eq. 5),
* ``staggered_score(score, dsigma) = exp(-dsigma Q) score`` (SEDD's Tweedie tau-leaping, eq. 19),
* ``score_entropy(log_score, sigma, x_t, x0)``: the denoising score entropy (SEDD eq. 10)
  divided by the rate dsigma, *including* its constant K(a) = a (log a - 1), so that it is zero at
  the true ratios and non-negative.

The absorbing graph's mask token is the last id, V - 1, unless given: the published LLaDA and Dream
checkpoints keep theirs inside the vocabulary (126336 of 126464, 151666 of 152064). The score-entropy
loss of SEDD (the absorbing ``score_entropy``) reads the clean tokens as the ids below the mask, so
it needs the mask last.
"""

from __future__ import annotations

import torch

from ..categorical import fill_rows_, neg_infinity
from .schedules import expm1_sigma


def _uniform(shape, like: torch.Tensor, generator=None, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=like.device, dtype=dtype)


def _expand(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample sigma ([B], [B, 1] or [B, L]) against token ids x [B, L]."""
    while sigma.dim() < x.dim():
        sigma = sigma.unsqueeze(-1)
    return sigma


class Graph:
    """The structure Q of the forward process. ``vocab_size`` counts every state (the mask too)."""

    name = ""
    absorbing = False

    def __init__(self, vocab_size: int):
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {vocab_size}")
        self.vocab_size = vocab_size

    @property
    def mask_token_id(self) -> int | None:
        return None

    def sample_prior(self, shape, device=None, generator=None) -> torch.Tensor:
        raise NotImplementedError

    def sample_xt(self, x0, sigma, generator=None, uniform_noise=None) -> torch.Tensor:
        raise NotImplementedError

    def transp_transition(self, x, sigma) -> torch.Tensor:
        raise NotImplementedError

    def reverse_rate(self, x, score) -> torch.Tensor:
        raise NotImplementedError

    def staggered_score(self, score, dsigma) -> torch.Tensor:
        raise NotImplementedError

    def score_entropy(self, log_score, sigma, x_t, x0) -> torch.Tensor:
        raise NotImplementedError


class _AbsorbingScoreEntropy(torch.autograd.Function):
    """The absorbing score entropy with a hand-written backward: a training step then builds two
    [B, L, V]-sized tensors for it (the masked rows' scores, the gradient) instead of about seven
    (row selection, exp, and the autograd buffers of each), which dominate the step of a small
    model. Values and gradients are
    those of the plain formula: d/ds_y = exp(s_y) for y != M, minus r at y = x0, on masked rows."""

    @staticmethod
    def forward(ctx, log_score, ratio, x_t, x0, mask_token_id):
        masked = x_t == mask_token_id
        at_x0 = torch.gather(log_score, -1, x0.unsqueeze(-1)).squeeze(-1)
        # sum_{y != M} s_y on the masked rows only (the mask is the last id)
        rows = masked.reshape(-1).nonzero().squeeze(-1)
        pos = torch.zeros(x_t.shape, dtype=log_score.dtype, device=log_score.device)
        scores = log_score.reshape(-1, log_score.shape[-1]).index_select(0, rows).exp_()
        pos.view(-1)[rows] = scores[:, :mask_token_id].sum(dim=-1)
        const = ratio * (ratio.log() - 1)
        # rows without a mask carry no loss (where, not a product: their terms may be inf)
        entropy = torch.where(masked, pos - ratio * at_x0 + const, 0.0)
        ctx.save_for_backward(log_score, ratio, masked, x0, at_x0)
        ctx.mask_token_id = mask_token_id
        return entropy

    @staticmethod
    def backward(ctx, grad):
        log_score, ratio, masked, x0, at_x0 = ctx.saved_tensors
        grad = torch.where(masked, grad, 0.0)
        grad_log_score = grad_ratio = None
        if ctx.needs_input_grad[0]:
            # unmasked rows are zeroed before the exp (their scores may overflow it); their grad is 0
            grad_log_score = fill_rows_(log_score.clone(), ~masked, 0.0).exp_().mul_(grad.unsqueeze(-1))
            grad_log_score[..., ctx.mask_token_id] = 0.0
            grad_log_score.scatter_add_(-1, x0.unsqueeze(-1), torch.where(masked, -(grad * ratio), 0.0).unsqueeze(-1))
        if ctx.needs_input_grad[1]:  # d/dr [-r s_x0 + r (log r - 1)] = log r - s_x0
            grad_ratio = torch.where(masked, grad * (ratio.log() - at_x0), 0.0)
        return grad_log_score, grad_ratio, None, None, None


class AbsorbingGraph(Graph):
    """Q = e_M 1^T - I: every token jumps to the mask M at rate 1; the mask never leaves.

    Marginal: q(x_t | x0) keeps x0 with probability e^-sigma and is M otherwise.
    """

    name = "absorbing"
    absorbing = True

    def __init__(self, vocab_size: int, mask_token_id: int | None = None):
        super().__init__(vocab_size)
        if mask_token_id is not None and (
            not isinstance(mask_token_id, int) or isinstance(mask_token_id, bool) or not 0 <= mask_token_id < vocab_size
        ):
            raise ValueError(f"mask_token_id must be an id in [0, {vocab_size}), got {mask_token_id!r}")
        self._mask_token_id = vocab_size - 1 if mask_token_id is None else mask_token_id

    @property
    def mask_token_id(self) -> int:
        return self._mask_token_id

    def sample_prior(self, shape, device=None, generator=None):
        return torch.full(shape, self.mask_token_id, dtype=torch.long, device=device)

    def sample_xt(self, x0, sigma, generator=None, uniform_noise=None):
        move_chance = -torch.expm1(-_expand(sigma, x0))
        u = uniform_noise if uniform_noise is not None else _uniform(x0.shape, x0, generator, move_chance.dtype)
        return torch.where(u < move_chance, torch.full_like(x0, self.mask_token_id), x0)

    def transp_transition(self, x, sigma):
        sigma = _expand(sigma, x).unsqueeze(-1)
        stay = torch.exp(-sigma)
        # from the mask every state (the mask included) is reached with the leftover mass; the
        # entry at x adds the staying mass. Built as one [..., V] tensor (no one-hot).
        leave = torch.where((x == self.mask_token_id).unsqueeze(-1), 1 - stay, 0.0)
        row = leave.expand(*x.shape, self.vocab_size).contiguous()
        return row.scatter_(-1, x.unsqueeze(-1), stay + leave)

    def reverse_rate(self, x, score):
        # Q[x, y] is 1 for y != M when x = M and 0 otherwise, so only masked positions move.
        is_mask = (x == self.mask_token_id).unsqueeze(-1)
        rate = score.masked_fill(~is_mask, 0.0)
        rate[..., self.mask_token_id] = 0.0
        rate[..., self.mask_token_id] = torch.where(is_mask.squeeze(-1), -rate.sum(-1), 0.0)
        return rate

    def staggered_score(self, score, dsigma):
        # exp(-dsigma Q) score: scale by e^dsigma and move (1 - e^dsigma) * sum(score) onto M.
        dsigma = dsigma if dsigma.dim() == score.dim() - 1 else _expand(dsigma, score[..., 0])
        extra = (1 - dsigma.exp()) * score.sum(dim=-1)
        out = score * dsigma.exp().unsqueeze(-1)
        out[..., self.mask_token_id] += extra
        return out

    def score_entropy(self, log_score, sigma, x_t, x0):
        """SEDD absorbing score entropy; zero where x_t is not masked.

        With r = 1/(e^sigma - 1) the ratio p(x0)/p(M) of the marginals:
        sum_{y != M} s_y - r log s_{x0} + r (log r - 1).
        """
        if self.mask_token_id != self.vocab_size - 1:
            raise ValueError(
                f"the absorbing score entropy needs the mask as the last id ({self.vocab_size - 1}), got {self.mask_token_id}"
            )
        ratio = 1 / expm1_sigma(_expand(sigma, x_t)).expand_as(x_t)
        return _AbsorbingScoreEntropy.apply(log_score, ratio, x_t, x0, self.mask_token_id)

    # --- closed forms for x0-parameterised rates (CTMC / tau-LDR); additive -------------------
    def transp_rate(self, x) -> torch.Tensor:
        """Row x of Q: the unit-rate jumps out of each token [..., V] (to the mask at rate 1)."""
        row = torch.zeros(*x.shape, self.vocab_size, device=x.device)
        unmasked = (x != self.mask_token_id).unsqueeze(-1).float()
        row[..., self.mask_token_id] = unmasked[..., 0]
        return row.scatter(-1, x.unsqueeze(-1), -unmasked)

    def log_ratio_from_x0(self, log_p0, x, sigma) -> torch.Tensor:
        """log p_t(x with token y) / p_t(x) implied by p(x0 | x) [..., V] (Campbell et al. eq. of
        R-hat, summed over x0 in closed form): at a masked position sum_x0 p(x0) q(y|x0)/q(M|x0) =
        p(y) / (e^sigma - 1); unmasked positions never move (a finite log 0 off x). 0 at y = x."""
        esigm1 = expm1_sigma(_expand(sigma, x)).clamp_min(1e-30).unsqueeze(-1).to(log_p0.dtype)
        masked = (x == self.mask_token_id).unsqueeze(-1)
        out = torch.where(masked, log_p0 - esigm1.log(), neg_infinity(log_p0.dtype))
        return out.scatter(-1, x.unsqueeze(-1), 0.0)


def uniform_ratio_offset(log_px: torch.Tensor, esigm1: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(1 - p_x) + p_x E/(N + E), the part of the uniform graph's x0-implied ratio
    p_t(x with token y) / p_t(x) = (1 - p_x) + p_x E/(N + E) + p_y N/E that does not depend on y
    (``UniformGraph.log_ratio_from_x0``; the CT-ELBO's c0, tau-leaping's ``a``). ``log_px`` is
    log p~(x0 = x | x), ``esigm1`` E = e^sigma - 1 (broadcastable), N = ``vocab_size``. 1 - p_x is
    computed as -expm1(log p_x), without cancellation."""
    return -torch.expm1(log_px.clamp_max(0)) + log_px.exp() * esigm1 / (vocab_size + esigm1)


class UniformGraph(Graph):
    """Q = (1 1^T - N I) / N: every token jumps to a uniformly drawn token (itself included).

    Marginal: q(x_t | x0) is x0 with probability e^-sigma + (1 - e^-sigma)/N, any other token
    with (1 - e^-sigma)/N.
    """

    name = "uniform"

    def sample_prior(self, shape, device=None, generator=None):
        return torch.randint(0, self.vocab_size, shape, device=device, generator=generator)

    def sample_xt(self, x0, sigma, generator=None, uniform_noise=None):
        move_chance = -torch.expm1(-_expand(sigma, x0))
        u = uniform_noise if uniform_noise is not None else _uniform(x0.shape, x0, generator, move_chance.dtype)
        new = torch.randint(0, self.vocab_size, x0.shape, device=x0.device, generator=generator)
        return torch.where(u < move_chance, new, x0)

    def transp_transition(self, x, sigma):
        sigma = _expand(sigma, x).unsqueeze(-1)
        n = self.vocab_size
        row = torch.ones(*x.shape, n, dtype=sigma.dtype, device=x.device) * (1 - torch.exp(-sigma)) / n
        row = row.scatter(-1, x.unsqueeze(-1), torch.zeros_like(row))
        return row.scatter(-1, x.unsqueeze(-1), 1 - row.sum(dim=-1, keepdim=True))

    def reverse_rate(self, x, score):
        rate = score / self.vocab_size
        rate = rate.scatter(-1, x.unsqueeze(-1), torch.zeros_like(rate))
        return rate.scatter(-1, x.unsqueeze(-1), -rate.sum(dim=-1, keepdim=True))

    def staggered_score(self, score, dsigma):
        dsigma = dsigma if dsigma.dim() == score.dim() - 1 else _expand(dsigma, score[..., 0])
        epow = (-dsigma).exp().unsqueeze(-1)
        return ((epow - 1) / (self.vocab_size * epow)) * score.sum(dim=-1, keepdim=True) + score / epow

    def score_entropy(self, log_score, sigma, x_t, x0):
        """SEDD uniform score entropy with weights Q(x_t, y) = 1/N.

        The ratios p(y)/p(x_t) are rho = E/(E+N) for every y when x_t = x0, and 1/rho at y = x0,
        1 elsewhere when x_t != x0 (E = e^sigma - 1).
        """
        n = self.vocab_size
        esigm1 = expm1_sigma(_expand(sigma, x_t))
        ratio = 1 - n / (esigm1 + n)
        at_xt = torch.gather(log_score, -1, x_t.unsqueeze(-1)).squeeze(-1)
        neg = log_score.mean(dim=-1) - at_xt / n
        at_x0 = torch.gather(log_score, -1, x0.unsqueeze(-1)).squeeze(-1)
        same = x_t == x0
        neg = torch.where(same, ratio * neg, at_x0 / esigm1 + neg)
        const = torch.where(
            same,
            (n - 1) / n * ratio * (ratio.log() - 1),
            ((-ratio.log() - 1) / ratio - (n - 2)) / n,
        )
        sexp = log_score.exp()
        pos = sexp.mean(dim=-1) - torch.gather(sexp, -1, x_t.unsqueeze(-1)).squeeze(-1) / n
        return pos - neg + const

    # --- closed forms for x0-parameterised rates (CTMC / tau-LDR); additive -------------------
    def transp_rate(self, x) -> torch.Tensor:
        """Row x of Q: every other token at rate 1/N, -(N-1)/N at x [..., V]."""
        n = self.vocab_size
        row = torch.full((*x.shape, n), 1.0 / n, device=x.device)
        return row.scatter(-1, x.unsqueeze(-1), -(n - 1) / n)

    def log_ratio_from_x0(self, log_p0, x, sigma) -> torch.Tensor:
        """log p_t(x with token y) / p_t(x) implied by p(x0 | x) [..., V], 0 at y = x.

        With q(y | x0) = u + alpha [y = x0], u = (1 - alpha)/N, w = alpha + u and E = e^sigma - 1,
        sum_x0 p(x0) q(y|x0)/q(x|x0) = p_y w/u + p_x u/w + (1 - p_x - p_y)
                                     = (1 - p_x) + p_x E/(N + E) + p_y N/E,
        a sum of non-negative terms (no cancellation; 1 - p_x via expm1 of log p_x).
        """
        n = self.vocab_size
        esigm1 = expm1_sigma(_expand(sigma, x)).clamp_min(1e-30).unsqueeze(-1).to(log_p0.dtype)
        log_px = torch.gather(log_p0, -1, x.unsqueeze(-1))
        ratio = uniform_ratio_offset(log_px, esigm1, n) + log_p0.exp() * (n / esigm1)
        return ratio.log().scatter(-1, x.unsqueeze(-1), 0.0)


GRAPHS: dict[str, type[Graph]] = {"absorbing": AbsorbingGraph, "uniform": UniformGraph}
GRAPH_ALIASES = {"absorb": "absorbing"}


def get_graph(name: str, vocab_size: int, mask_token_id: int | None = None) -> Graph:
    """The graph ``name`` over ``vocab_size`` states; ``mask_token_id`` places the absorbing graph's
    mask (default: the last id)."""
    name = GRAPH_ALIASES.get(name, name)
    if name not in GRAPHS:
        raise ValueError(f"graph must be one of {sorted(GRAPHS)} (or 'absorb'), got {name!r}")
    if name == "absorbing" and mask_token_id is not None:
        return GRAPHS[name](vocab_size, mask_token_id)
    return GRAPHS[name](vocab_size)


__all__ = ["AbsorbingGraph", "GRAPHS", "GRAPH_ALIASES", "Graph", "UniformGraph", "get_graph", "uniform_ratio_offset"]
