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

The absorbing graph's mask token is always the last id, V - 1.
"""

from __future__ import annotations

import torch

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


class AbsorbingGraph(Graph):
    """Q = e_M 1^T - I: every token jumps to the mask M at rate 1; the mask never leaves.

    Marginal: q(x_t | x0) keeps x0 with probability e^-sigma and is M otherwise.
    """

    name = "absorbing"
    absorbing = True

    @property
    def mask_token_id(self) -> int:
        return self.vocab_size - 1

    def sample_prior(self, shape, device=None, generator=None):
        return torch.full(shape, self.mask_token_id, dtype=torch.long, device=device)

    def sample_xt(self, x0, sigma, generator=None, uniform_noise=None):
        move_chance = -torch.expm1(-_expand(sigma, x0))
        u = uniform_noise if uniform_noise is not None else _uniform(x0.shape, x0, generator, move_chance.dtype)
        return torch.where(u < move_chance, torch.full_like(x0, self.mask_token_id), x0)

    def transp_transition(self, x, sigma):
        sigma = _expand(sigma, x).unsqueeze(-1)
        row = torch.exp(-sigma) * torch.nn.functional.one_hot(x, self.vocab_size).to(sigma.dtype)
        # from the mask every state (the mask included) is reached with the leftover mass
        return row + torch.where((x == self.mask_token_id).unsqueeze(-1), 1 - torch.exp(-sigma), 0.0)

    def reverse_rate(self, x, score):
        # Q[x, y] is 1 for y != M when x = M and 0 otherwise, so only masked positions move.
        is_mask = (x == self.mask_token_id).unsqueeze(-1)
        rate = torch.where(is_mask, score, torch.zeros_like(score))
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
        masked = x_t == self.mask_token_id
        ratio = 1 / expm1_sigma(_expand(sigma, x_t)).expand_as(x_t)[masked]
        scores = log_score[masked]
        neg = ratio * torch.gather(scores, -1, x0[masked].unsqueeze(-1)).squeeze(-1)
        pos = scores[:, :-1].exp().sum(dim=-1)
        const = ratio * (ratio.log() - 1)
        entropy = torch.zeros(x_t.shape, dtype=log_score.dtype, device=log_score.device)
        entropy[masked] = pos - neg + const
        return entropy


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


GRAPHS: dict[str, type[Graph]] = {"absorbing": AbsorbingGraph, "uniform": UniformGraph}
GRAPH_ALIASES = {"absorb": "absorbing"}


def get_graph(name: str, vocab_size: int) -> Graph:
    name = GRAPH_ALIASES.get(name, name)
    if name not in GRAPHS:
        raise ValueError(f"graph must be one of {sorted(GRAPHS)} (or 'absorb'), got {name!r}")
    return GRAPHS[name](vocab_size)
