"""The one enumeration oracle of the test suite: a p_data small enough to enumerate, and the
*exact* quantities of its forward process.

* ``ExactOracle``: p_data over length-L sequences on a tiny vocabulary (``random``: a few strong
  peaks over full support; ``random_table``: a well-spread table over every sequence), with, by
  enumeration, the marginal p_t(x_t), the posterior marginals p(x0^i | x_t), the concrete score
  p_t(x_t with token i set to y) / p_t(x_t) (SEDD's s(x_t)_{i,y}) for the continuous-time absorbing
  and uniform kernels, and ``posterior_log_probs`` for any per-token kernel (D3PM, CTMC).
* ``oracle_model``: a model whose backbone is replaced by ``OracleBackbone``, which emits the raw
  output that the model's own ``parameterize`` turns into those exact quantities. Then
  ``negative_elbo`` must equal -log p_data(x) (absorbing graph, sigma(1) = inf) and ``generate``
  must reach p_data as the number of steps grows.
* ``all_states``, ``state_index``, ``kernel_from_probs``, ``tv_distance``: enumerating the state
  space [V]^L and the laws of samplers on it.

The oracle computes the forward kernel from the definitions (never through ``hf_ddlm.processes``)
so that the code under test is checked against an independent implementation:

* absorbing (mask M = V - 1): q_t(y | x0) = alpha [y = x0] + (1 - alpha) [y = M],
* uniform (N = V states):      q_t(y | x0) = alpha [y = x0] + (1 - alpha) / N,

with alpha = exp(-sigma(t)), and positions noised independently.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from .models import tiny_config


def all_states(vocab: int, length: int) -> torch.Tensor:
    """Every sequence of ``length`` tokens in [0, vocab), [vocab^length, length] (lexicographic)."""
    return torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.long)


def state_index(x: torch.Tensor, vocab: int) -> torch.Tensor:
    """Row index of each sequence of x [B, L] in ``all_states(vocab, L)``."""
    powers = vocab ** torch.arange(x.shape[-1] - 1, -1, -1)
    return (x * powers).sum(-1)


def tv_distance(mu: torch.Tensor, nu: torch.Tensor) -> float:
    """Total variation between two distributions given as probability vectors."""
    return 0.5 * float((mu - nu).abs().sum())


def kernel_from_probs(probs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """K[x, y] = prod_d probs[x, d, y^d] for per-position transition probabilities probs [N, L, V]."""
    k = torch.ones(probs.shape[0], states.shape[0], dtype=torch.float64)
    for d in range(states.shape[1]):
        k = k * probs[:, d, :].double()[:, states[:, d]]
    return k


class ExactOracle:
    """p_data on length-``L`` sequences, with every quantity of its forward process by enumeration.

    ``sequences`` [K, L] (ids < ``vocab_size``, never the mask) and ``probs`` [K] (normalised
    here) describe p_data. ``graph`` is ``"absorbing"`` (mask id ``vocab_size - 1``) or ``"uniform"``.
    All outputs are float64. Keep K * L * V small: tables are [B, K, L, V].
    """

    def __init__(self, sequences: torch.Tensor, probs: torch.Tensor, vocab_size: int, graph: str = "absorbing"):
        if graph not in ("absorbing", "uniform"):
            raise ValueError(f"graph must be 'absorbing' or 'uniform', got {graph!r}")
        sequences = torch.as_tensor(sequences, dtype=torch.long)
        probs = torch.as_tensor(probs, dtype=torch.float64)
        if sequences.dim() != 2 or probs.shape != sequences.shape[:1]:
            raise ValueError("sequences must be [K, L] and probs [K]")
        if (probs < 0).any() or probs.sum() <= 0:
            raise ValueError("probs must be non-negative with a positive sum")
        self.graph = graph
        self.vocab_size = vocab_size
        self.mask_token_id = vocab_size - 1 if graph == "absorbing" else None
        num_clean = vocab_size - 1 if graph == "absorbing" else vocab_size
        if ((sequences < 0) | (sequences >= num_clean)).any():
            raise ValueError(f"sequences must hold clean ids in [0, {num_clean})")
        if len(torch.unique(sequences, dim=0)) != len(sequences):
            raise ValueError("sequences must be distinct")
        self.sequences = sequences
        self.probs = probs / probs.sum()
        self.length = sequences.shape[1]
        self.num_clean = num_clean

    @classmethod
    def random(
        cls,
        vocab_size: int,
        length: int,
        graph: str = "absorbing",
        seed: int = 0,
        peak: float = 0.8,
        num_peaks: int = 3,
    ):
        """A full-support p_data on every clean sequence: mass ``peak`` spread over ``num_peaks``
        random sequences (strong correlations between positions, which a sampler that unmasks
        positions independently gets wrong) and the rest over all sequences at random.

        Full support keeps p_t(x_t) > 0 for every state a sampler can reach.
        """
        g = torch.Generator().manual_seed(seed)
        num_clean = vocab_size - 1 if graph == "absorbing" else vocab_size
        sequences = torch.tensor(list(itertools.product(range(num_clean), repeat=length)), dtype=torch.long)
        background = torch.rand(len(sequences), generator=g, dtype=torch.float64) + 0.1
        probs = (1 - peak) * background / background.sum()
        peaks = torch.randperm(len(sequences), generator=g)[:num_peaks]
        weights = torch.rand(num_peaks, generator=g, dtype=torch.float64) + 0.5
        probs[peaks] += peak * weights / weights.sum()
        return cls(sequences, probs, vocab_size, graph)

    @classmethod
    def random_table(cls, data_vocab: int, length: int, vocab_size: int, seed: int = 0, concentration: float = 1.0):
        """p_data on every sequence of [data_vocab]^L (``all_states`` order) from a fixed random table,
        well spread (no peaks): the discrete-time and CTMC tests' distribution. ``data_vocab`` is
        ``vocab_size - 1`` (absorbing graph: the extra id is the mask) or ``vocab_size`` (uniform)."""
        if data_vocab not in (vocab_size - 1, vocab_size):
            raise ValueError(f"data_vocab must be vocab_size - 1 or vocab_size, got {data_vocab} and {vocab_size}")
        g = torch.Generator().manual_seed(seed)
        states = all_states(data_vocab, length)
        u = torch.rand(len(states), generator=g, dtype=torch.float64)
        w = -(torch.log(u) ** (1 / concentration))  # a random, well-spread positive table
        oracle = cls(states, w, vocab_size, "absorbing" if data_vocab < vocab_size else "uniform")
        oracle.probs = (w / w.sum()).double()  # normalised once, as these tests' values were computed
        return oracle

    # -- p_data ----------------------------------------------------------------------------
    def index_of(self, x: torch.Tensor) -> torch.Tensor:
        """The row of ``sequences`` equal to each x [B, L], or -1."""
        eq = (x[:, None, :] == self.sequences[None]).all(-1)  # [B, K]
        return torch.where(eq.any(-1), eq.float().argmax(-1), torch.full_like(eq[:, 0], -1, dtype=torch.long))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_data(x) [B] (-inf off the support)."""
        idx = self.index_of(x)
        lp = self.probs.log()[idx.clamp_min(0)]
        return torch.where(idx >= 0, lp, torch.full_like(lp, -math.inf))

    def entropy(self) -> float:
        p = self.probs[self.probs > 0]
        return float(-(p * p.log()).sum())

    def sample(self, n: int, generator=None) -> torch.Tensor:
        return self.sequences[torch.multinomial(self.probs, n, replacement=True, generator=generator)]

    def total_variation(self, samples: torch.Tensor) -> float:
        """TV between the empirical distribution of ``samples`` [N, L] and p_data."""
        idx = self.index_of(samples)
        counts = torch.bincount(idx[idx >= 0], minlength=len(self.sequences)).double()
        outside = (idx < 0).double().sum()
        n = len(samples)
        return float(0.5 * ((counts / n - self.probs).abs().sum() + outside / n))

    # names of the enumeration tests: p_data as a table over ``states``
    @property
    def states(self) -> torch.Tensor:
        return self.sequences

    @property
    def p(self) -> torch.Tensor:
        return self.probs

    @property
    def nll(self) -> float:
        """E_p[-log p] = H(p_data) in nats: the NLL of a perfect model."""
        return self.entropy()

    def prob_of(self, x: torch.Tensor) -> torch.Tensor:
        """p_data(x) for sequences x [B, L] (0 off the support)."""
        idx = self.index_of(x)
        return torch.where(idx >= 0, self.probs[idx.clamp_min(0)], 0.0)

    def mutual_information(self) -> float:
        """I(x^1; x^2) for L = 2 and p_data on every clean pair."""
        if self.length != 2 or len(self.sequences) != self.num_clean**2:
            raise ValueError("mutual_information needs L = 2 and a table over every clean pair")
        joint = self.probs.view(self.num_clean, self.num_clean)
        outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
        return float((joint * (joint / outer).log()).sum())

    # -- the forward process ---------------------------------------------------------------
    def kernel(self, sigma: torch.Tensor) -> torch.Tensor:
        """q_t(y | x0^j) for every support sequence and position: [B, K, L, V] (float64)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
        alpha = torch.exp(-sigma)[:, None, None, None]
        onehot = nn.functional.one_hot(self.sequences, self.vocab_size).double()[None]  # [1, K, L, V]
        if self.graph == "absorbing":
            to_mask = torch.zeros(self.vocab_size, dtype=torch.float64)
            to_mask[self.mask_token_id] = 1.0
            return alpha * onehot + (1 - alpha) * to_mask
        return alpha * onehot + (1 - alpha) / self.vocab_size

    def _likelihoods(self, x_t: torch.Tensor, sigma) -> torch.Tensor:
        """q_t(x_t^j | x0_k^j) [B, K, L] at sigma [B]."""
        table = self.kernel(sigma).expand(x_t.shape[0], -1, -1, -1)
        index = x_t[:, None, :, None].expand(-1, table.shape[1], -1, 1)
        return table.gather(-1, index).squeeze(-1)

    def marginal(self, x_t: torch.Tensor, sigma) -> torch.Tensor:
        """p_t(x_t) = sum_x0 p_data(x0) prod_j q_t(x_t^j | x0^j) [B]."""
        return (self.probs * self._likelihoods(x_t, sigma).prod(-1)).sum(-1)

    def posterior(self, x_t: torch.Tensor, sigma=None) -> torch.Tensor:
        """p(x0^i = y | x_t) [B, L, V] (the mask column is 0).

        Absorbing: independent of t, x0 is drawn from p_data restricted to the sequences that
        agree with x_t's unmasked tokens (``sigma`` is ignored). Uniform: needs ``sigma``.
        """
        if self.graph == "absorbing":
            agree = (x_t[:, None, :] == self.sequences[None]) | (x_t[:, None, :] == self.mask_token_id)
            weight = self.probs * agree.all(-1)  # [B, K]
        else:
            if sigma is None:
                raise ValueError("the uniform graph's posterior depends on sigma; pass it")
            weight = self.probs * self._likelihoods(x_t, sigma).prod(-1)
        total = weight.sum(-1, keepdim=True)
        if (total <= 0).any():
            raise ValueError("x_t has probability 0 under the forward process of p_data")
        onehot = nn.functional.one_hot(self.sequences, self.vocab_size).double()  # [K, L, V]
        return torch.einsum("bk,klv->blv", weight / total, onehot)

    def score(self, x_t: torch.Tensor, sigma) -> torch.Tensor:
        """The concrete score p_t(x_t with token i set to y) / p_t(x_t) [B, L, V] (1 at y = x_t^i)."""
        lik = self._likelihoods(x_t, sigma)  # [B, K, L]
        table = self.kernel(sigma).expand(x_t.shape[0], -1, -1, -1)  # [B, K, L, V]
        denominator = (self.probs * lik.prod(-1)).sum(-1)  # [B]
        if (denominator <= 0).any():
            raise ValueError("x_t has probability 0 under the forward process of p_data")
        ratios = []
        for i in range(self.length):
            others = torch.cat([lik[:, :, :i], lik[:, :, i + 1 :]], dim=-1).prod(-1)  # [B, K]
            numerator = torch.einsum("bk,bkv->bv", self.probs * others, table[:, :, i])
            ratios.append(numerator / denominator[:, None])
        return torch.stack(ratios, dim=1)

    def log_score(self, x_t: torch.Tensor, sigma) -> torch.Tensor:
        return self.score(x_t, sigma).log()

    def posterior_log_probs(self, x_t: torch.Tensor, lik: torch.Tensor) -> torch.Tensor:
        """log p(x0^d = v | x_t) [B, L, V] (float64) for any per-token forward kernel
        ``lik[a, b] = q(x_t^d = b | x0^d = a)`` ([V, V], or [B, V, V] per sample; D3PM's discrete
        steps, CTMC's rates). Impossible v get -1e6. Computed in log space over the support."""
        lik = lik.double()
        if lik.dim() == 2:
            lik = lik.expand(x_t.shape[0], *lik.shape)
        # w[b, n] = p(x0_n) prod_d lik[b, x0_n^d, x_t^d]
        logw = self.probs.log()[None].clone().expand(x_t.shape[0], -1).clone()
        for d in range(self.length):
            a = self.sequences[:, d][None].expand(x_t.shape[0], -1)  # [B, N]
            col = torch.gather(lik, 2, x_t[:, d][:, None, None].expand(-1, lik.shape[1], 1)).squeeze(-1)  # [B, V]
            logw = logw + torch.gather(col, 1, a).clamp_min(1e-300).log()
        w = torch.softmax(logw, dim=-1)
        out = torch.zeros(x_t.shape[0], self.length, self.vocab_size, dtype=torch.float64)
        for d in range(self.length):
            out[:, d].index_add_(1, self.sequences[:, d], w)
        return torch.where(out > 0, out.clamp_min(1e-300).log(), -1e6)


class OracleBackbone(nn.Module):
    """A drop-in for ``DiT`` whose raw output makes the model's ``parameterize`` exact.

    ``output_kind="log_probs"`` (MDLM, SUBS): the logits are log p(x0^i | x_t) (SUBS then adds
    -1e6 to the mask column and carries unmasked tokens over). ``output_kind="log_score"`` (SEDD):
    the logits are the exact log score, plus log(e^sigma - 1) + log(V - 1) when the model
    subtracts them (``scale_by_sigma``). Outputs are in the dtype of the module (``.double()``
    gives float64 end to end).
    """

    def __init__(
        self, oracle: ExactOracle, output_kind: str, scale_by_sigma: bool = False, time_conditioning: bool = True
    ):
        super().__init__()
        if output_kind not in ("log_probs", "log_score"):
            raise ValueError(f"output_kind must be 'log_probs' or 'log_score', got {output_kind!r}")
        if output_kind == "log_probs" and oracle.graph != "absorbing":
            raise ValueError("log_probs (SUBS) needs the absorbing graph")
        if scale_by_sigma and oracle.graph != "absorbing":
            raise ValueError("scale_by_sigma is defined for the absorbing graph only")
        sigma_free = oracle.graph == "absorbing" and scale_by_sigma  # the score's t-dependence is the scaling
        if output_kind == "log_score" and not time_conditioning and not sigma_free:
            raise ValueError("an exact score without time conditioning needs the absorbing graph and scale_by_sigma")
        self.oracle = oracle
        self.output_kind = output_kind
        self.scale_by_sigma = scale_by_sigma
        # a parameter so that ``model.device`` / ``model.dtype`` work; it carries the output dtype
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, sigma, attention_mask=None, position_ids=None, kv_caches=None):
        ids = input_ids.cpu()
        needs_sigma = self.output_kind == "log_score" and not self.scale_by_sigma
        # a sampling batch holds few distinct states (at most V^L) at one sigma: compute each once
        key = ids.double()
        if needs_sigma:
            key = torch.cat([key, sigma.detach().cpu().double().reshape(-1, 1).expand(len(ids), 1)], dim=1)
        unique, inverse = torch.unique(key, dim=0, return_inverse=True)
        states = unique[:, : ids.shape[1]].long()
        if self.output_kind == "log_probs":
            raw = self.oracle.posterior(states).log()
        elif self.scale_by_sigma:
            # the absorbing score at a masked position is p(x0^i = y | x_t) / (e^sigma - 1) (RADD,
            # thm 1): emitting log p + log(V - 1) makes the model's subtraction give it exactly,
            # whatever sigma the backbone was (or was not) conditioned on
            raw = self.oracle.posterior(states).log() + math.log(self.oracle.vocab_size - 1)
        else:
            raw = self.oracle.log_score(states, unique[:, -1])
        return raw[inverse].to(device=input_ids.device, dtype=self.anchor.dtype)


def oracle_model(model_class, oracle: ExactOracle, dtype=torch.float32, **config_overrides):
    """A ``model_class`` (SEDD / MDLM) for ``oracle``'s vocabulary and length whose backbone is
    the exact ``OracleBackbone``: its outputs, ``forward`` loss, ``negative_elbo`` and ``generate``
    then use the exact scores / posteriors."""
    overrides = dict(
        vocab_size=oracle.vocab_size,
        max_position_embeddings=oracle.length,
        graph=oracle.graph,
        hidden_size=8,
        num_attention_heads=2,
        cond_dim=8,
    )
    overrides.update(config_overrides)
    config = tiny_config(model_class, **overrides)
    model = model_class(config).eval()
    model.backbone = OracleBackbone(
        oracle,
        model.model_output_kind,
        scale_by_sigma=bool(getattr(config, "scale_by_sigma", False)),
        time_conditioning=config.time_conditioning,
    )
    return model.to(dtype)


__all__ = [
    "ExactOracle",
    "OracleBackbone",
    "all_states",
    "kernel_from_probs",
    "oracle_model",
    "state_index",
    "tv_distance",
]
