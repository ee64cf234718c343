"""Exact enumeration on tiny state spaces: a fixed p_data over [V_data]^L, the true posterior
p(x0^d | x_t) of any factorised forward kernel, and helpers to plug it into a model."""

from __future__ import annotations

import itertools

import torch


def all_states(vocab: int, length: int) -> torch.Tensor:
    """Every sequence of ``length`` tokens in [0, vocab), [vocab^length, length] (lexicographic)."""
    return torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.long)


def state_index(x: torch.Tensor, vocab: int) -> torch.Tensor:
    """Row index of each sequence of x [B, L] in ``all_states(vocab, L)``."""
    powers = vocab ** torch.arange(x.shape[-1] - 1, -1, -1)
    return (x * powers).sum(-1)


class EnumeratedData:
    """p_data over [V_data]^L (a fixed random table), embedded in a vocabulary of size ``vocab_size``
    (the extra ids, e.g. a mask, have probability 0 as clean tokens)."""

    def __init__(self, data_vocab: int, length: int, vocab_size: int, seed: int = 0, concentration: float = 1.0):
        g = torch.Generator().manual_seed(seed)
        self.data_vocab, self.length, self.vocab_size = data_vocab, length, vocab_size
        self.states = all_states(data_vocab, length)
        u = torch.rand(len(self.states), generator=g, dtype=torch.float64)
        w = -(torch.log(u) ** (1 / concentration))  # a random, well-spread positive table
        self.p = (w / w.sum()).double()

    @property
    def nll(self) -> float:
        """E_p[-log p] = H(p_data) in nats: the NLL of a perfect model."""
        return float(-(self.p * self.p.log()).sum())

    def marginal(self, d: int) -> torch.Tensor:
        out = torch.zeros(self.data_vocab, dtype=torch.float64)
        return out.index_add(0, self.states[:, d], self.p)

    def mutual_information(self) -> float:
        """I(x^1; x^2) for L = 2."""
        assert self.length == 2
        joint = self.p.view(self.data_vocab, self.data_vocab)
        outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
        return float((joint * (joint / outer).log()).sum())

    def prob_of(self, x: torch.Tensor) -> torch.Tensor:
        """p_data(x) for sequences x [B, L] over the full vocabulary (0 off the data vocabulary)."""
        inside = (x < self.data_vocab).all(-1)
        idx = state_index(x.clamp_max(self.data_vocab - 1), self.data_vocab)
        return torch.where(inside, self.p[idx], 0.0)

    def posterior_log_probs(self, x_t: torch.Tensor, lik: torch.Tensor) -> torch.Tensor:
        """log p(x0^d = v | x_t) [B, L, V] (float64) by enumeration, for a per-token forward kernel
        ``lik[a, b] = q(x_t^d = b | x0^d = a)`` ([V, V] or [B, V, V] per sample). Impossible v get -1e6."""
        lik = lik.double()
        if lik.dim() == 2:
            lik = lik.expand(x_t.shape[0], *lik.shape)
        # w[b, n] = p(x0_n) prod_d lik[b, x0_n^d, x_t^d]
        logw = self.p.log()[None].clone().expand(x_t.shape[0], -1).clone()
        for d in range(self.length):
            a = self.states[:, d][None].expand(x_t.shape[0], -1)  # [B, N]
            col = torch.gather(lik, 2, x_t[:, d][:, None, None].expand(-1, lik.shape[1], 1)).squeeze(-1)  # [B, V]
            logw = logw + torch.gather(col, 1, a).clamp_min(1e-300).log()
        w = torch.softmax(logw, dim=-1)
        out = torch.zeros(x_t.shape[0], self.length, self.vocab_size, dtype=torch.float64)
        for d in range(self.length):
            out[:, d].index_add_(1, self.states[:, d], w)
        return torch.where(out > 0, out.clamp_min(1e-300).log(), -1e6)


def tv_distance(mu: torch.Tensor, nu: torch.Tensor) -> float:
    return 0.5 * float((mu - nu).abs().sum())


def kernel_from_probs(probs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """K[x, y] = prod_d probs[x, d, y^d] for per-position transition probabilities probs [N, L, V]."""
    k = torch.ones(probs.shape[0], states.shape[0], dtype=torch.float64)
    for d in range(states.shape[1]):
        k = k * probs[:, d, :].double()[:, states[:, d]]
    return k
