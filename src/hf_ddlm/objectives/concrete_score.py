"""Concrete Score Matching (Meng, Choi, Song & Ermon, NeurIPS 2022) over Hamming-1 neighbours.

The concrete score of p at x is c_p(x)_{d,v} = p(x with d -> v) / p(x) - 1 for every position d
and token v != x^d: a D x S table (the entry at v = x^d is unused and held at 0). The explicit
objective E_{x~p} ||c_theta(x) - c_p(x)||^2 needs c_p; expanding the square (seed notes eq. 2.4)
gives, up to the constant E_p ||c_p||^2,

    J_CSM = E_{x~p} sum_{d,v} [c_theta(x)_{d,v}^2 + 2 c_theta(x)_{d,v}]
            - 2 E_{y~p} sum_{(x,(d,v)): x with d -> v = y} c_theta(x)_{d,v}.

For Hamming-1 the pairs pointing at y are x = y with d -> v (v != y^d) at coordinate (d, y^d), so
the second term needs the network at the D (S - 1) neighbours of each data point. The first term
is exact from one pass at y; the second is estimated without bias from K neighbours drawn
uniformly, each weighted by D (S - 1) / K (the notes' |N^{-1}(y)| c_theta(x)_i estimator).
"""

from __future__ import annotations

import torch


def _off_current(table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return table.scatter(-1, x.unsqueeze(-1), 0.0)


def concrete_score_first_term(c, x) -> torch.Tensor:
    """sum_{v != x^d} (c^2 + 2c) per position [B, L]: J_CSM's first term at x, exactly."""
    c = _off_current(c.to(torch.promote_types(c.dtype, torch.float32)), x)
    return (c * c + 2 * c).sum(-1)


def concrete_score_explicit_loss(c, c_target, x) -> torch.Tensor:
    """sum_{v != x^d} (c - c_target)^2 per position [B, L] (needs the true concrete score)."""
    diff = _off_current(c.to(torch.promote_types(c.dtype, torch.float32)) - c_target, x)
    return (diff * diff).sum(-1)


def sample_neighbours(y, loss_mask, vocab_size: int, num_samples: int, generator=None):
    """K Hamming-1 neighbours of each row of y, uniform over the (labelled) positions and the
    S - 1 other tokens. Returns (neighbours [K*B, L], positions [K*B], counts [K*B]) with
    counts = |N^{-1}(y)| = D_y (S - 1), D_y the number of labelled positions of the row."""
    yk = y.repeat(num_samples, 1)
    mk = loss_mask.repeat(num_samples, 1)
    u = torch.rand(mk.shape, generator=generator, device=y.device)
    d = torch.where(mk, u, -1.0).argmax(-1)  # uniform over labelled positions
    rows = torch.arange(yk.shape[0], device=y.device)
    shift = torch.randint(1, vocab_size, (yk.shape[0],), generator=generator, device=y.device)
    neighbours = yk.clone()
    neighbours[rows, d] = (yk[rows, d] + shift) % vocab_size
    counts = mk.sum(-1).to(torch.float32) * (vocab_size - 1)
    return neighbours, d, counts


def concrete_score_implicit_loss(
    c_data, y, c_neighbours, positions, counts, loss_mask, num_samples: int
) -> torch.Tensor:
    """The unbiased J_CSM estimate per position [B, L] (constant E_p ||c_p||^2 dropped).

    ``c_neighbours`` [K*B, L, V] is the network at the neighbours of ``sample_neighbours``; the
    second term of each draw, -2 counts/K c_theta(x)_{d, y^d}, is booked at its position d."""
    b = y.shape[0]
    first = concrete_score_first_term(c_data, y) * loss_mask
    yk = y.repeat(num_samples, 1)
    rows = torch.arange(yk.shape[0], device=y.device)
    back = c_neighbours[rows, positions, yk[rows, positions]].to(first.dtype)  # c_theta(x)_{d, y^d}
    second = torch.zeros(yk.shape, dtype=first.dtype, device=y.device)
    second[rows, positions] = -2 * counts / num_samples * back
    return first + second.view(num_samples, b, -1).sum(0)


__all__ = [
    "concrete_score_explicit_loss",
    "concrete_score_first_term",
    "concrete_score_implicit_loss",
    "sample_neighbours",
]
