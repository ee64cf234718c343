"""D3PM's discrete-time forward process (Austin et al., NeurIPS 2021), in closed form.

Steps k = 1..T; the shared time axis is t = k / T, so a D3PM step enters ``forward`` as
``timesteps = k / T`` and t = 0 stays clean data. Per step (row-stochastic, as the paper's eq. 1,
[Q_k]_ij = q(x_k = j | x_{k-1} = i)):

    Q_k = (1 - beta_k) I + beta_k 1 pi^T,

with pi the stationary distribution: uniform 1/K (uniform noise) or e_m (absorbing, m = mask =
V - 1). Every kernel shares pi, so products stay in the family and nothing V x V is ever built:

    Qbar_k  = alpha_bar_k I + (1 - alpha_bar_k) 1 pi^T,         alpha_bar_k = prod_{j<=k} (1 - beta_j)
    Q_{k|j} = (alpha_bar_k / alpha_bar_j) I + (1 - alpha_bar_k / alpha_bar_j) 1 pi^T   (j < k)

The reverse step from x_t to x_s (s < t, any stride) given a distribution w over x0:

    p(x_s = i | x_t)  ~  q(x_t | x_s = i) * [alpha_bar_s w(i) + (1 - alpha_bar_s) pi(i)]

which is the paper's eq. 4 when w = p~(x0 | x_t), the posterior q(x_s | x_t, x0) when w = onehot(x0),
and the exact mixture sum_v p~(v | x_t) q(x_s | x_t, v) when w ~ p~(v) / q(x_t | v) (``mixture_log_weights``).
All of it is computed in log space; impossible states carry the finite log 0 ``neg_infinity(dtype)``
(-1e6; float16 cannot hold it) instead of -inf so that gradients stay finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..categorical import neg_infinity
from .graphs import Graph
from .schedules import NoiseLevel, NoiseSchedule


def _log(p: torch.Tensor) -> torch.Tensor:
    """log p with log 0 = ``neg_infinity`` (clamped first so that the backward pass never sees 1/0)."""
    floor = {torch.float64: 1e-300, torch.float32: 1e-38}.get(p.dtype, torch.finfo(p.dtype).tiny)
    return torch.where(p > 0, p.clamp_min(floor).log(), neg_infinity(p.dtype))


@dataclass
class DiscreteNoiseLevel(NoiseLevel):
    """A D3PM step: ``step`` is k in 0..T ([B], long); ``sigma`` = -log alpha_bar_k (so that the
    graphs' ``sample_xt`` draws q(x_k | x0)); ``dsigma`` holds beta_k (discrete time has no rate)."""

    step: torch.Tensor | None = None


@dataclass
class StepCoefficients:
    """Scalars of one reverse step x_t -> x_s, each [B] float: alpha_bar at s and t, and the
    two-time kernel Q_{t|s}'s keep probability alpha_bar_t / alpha_bar_s and move = 1 - keep."""

    alpha_s: torch.Tensor
    one_minus_alpha_s: torch.Tensor
    alpha_t: torch.Tensor
    one_minus_alpha_t: torch.Tensor
    keep: torch.Tensor
    move: torch.Tensor


class DiscreteTimeSchedule(NoiseSchedule):
    """The T-step beta schedule of D3PM, tabulated in float64.

    ``base`` (a continuous schedule sigma(t)) gives beta_k = 1 - alpha(k/T) / alpha((k-1)/T): the
    log-linear schedule with eps = 0 gives beta_k = 1 / (T - k + 1) (the paper's absorbing "jsd"
    schedule, alpha_bar_k = 1 - k/T), the cosine schedule gives the paper's uniform schedule.
    ``betas`` (length T) sets them directly, unclipped. ``max_beta`` clips those of ``base`` (0.999
    for the cosine schedule, as in the official code); ``terminal_beta_one`` forces beta_T = 1 so
    that q(x_T | x0) is exactly the stationary pi (the official text code does this for absorbing
    noise).
    """

    name = "discrete"

    def __init__(
        self,
        num_timesteps: int,
        base: NoiseSchedule | None = None,
        betas=None,
        max_beta: float = 1.0,
        terminal_beta_one: bool = False,
    ):
        if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 1:
            raise ValueError(f"num_timesteps must be an integer >= 1, got {num_timesteps!r}")
        if not 0.0 < max_beta <= 1.0:
            raise ValueError(f"max_beta must be in (0, 1], got {max_beta}")
        T = self.num_timesteps = num_timesteps
        if betas is not None:
            betas = torch.as_tensor(betas, dtype=torch.float64, device="cpu").flatten()
            if betas.numel() != T:
                raise ValueError(f"betas must have num_timesteps = {T} entries, got {betas.numel()}")
            self._check(betas)  # explicit betas are used as given (no clip)
        else:
            if base is None:
                raise ValueError("DiscreteTimeSchedule needs a base schedule or explicit betas")
            sigma = base.total_noise(torch.arange(T + 1, dtype=torch.float64, device="cpu") / T).double()
            # beta_k = 1 - alpha_k / alpha_{k-1} = -expm1(sigma_{k-1} - sigma_k)
            betas = -torch.expm1(sigma[:-1] - sigma[1:])
            betas = betas.clamp_max(max_beta)
        if terminal_beta_one:
            betas = betas.clone()
            betas[-1] = 1.0
        self._check(betas)
        # tables live on the CPU in float64 (explicit device: from_pretrained builds models under a meta device)
        self.betas = torch.cat([torch.zeros(1, dtype=torch.float64, device="cpu"), betas])  # betas[k], k = 0..T
        self.log_alpha_bar = torch.cumsum(torch.log1p(-self.betas), 0)  # -inf where alpha_bar = 0
        self.alpha_bar = self.log_alpha_bar.exp()
        self.one_minus_alpha_bar = -torch.expm1(self.log_alpha_bar)

    @staticmethod
    def _check(betas):
        T = betas.numel()
        bad = ~((betas > 0) & (betas <= 1)) | ((betas >= 1) & (torch.arange(T, device="cpu") < T - 1))
        if bad.any():
            k = int(bad.nonzero()[0]) + 1
            raise ValueError(
                "the beta schedule must give beta_k in (0, 1) for k < T and in (0, 1] at k = T; "
                f"got beta_{k} = {betas[k - 1].item()}"
            )

    # --- the grid ------------------------------------------------------------------------------
    def step_index(self, t: torch.Tensor) -> torch.Tensor:
        """t = k / T -> k (long). Raises if t is not on the grid."""
        kf = t.double() * self.num_timesteps
        k = kf.round()
        off_grid = ((kf - k).abs() > 1e-2) | (k < 0) | (k > self.num_timesteps)
        if not torch.compiler.is_compiling() and off_grid.any():  # a value check: eager only (no export branch)
            raise ValueError(
                f"timesteps must be k / T for an integer k in [0, T = {self.num_timesteps}] (D3PM is discrete-time)"
            )
        return k.long()

    def _table(self, table, k, like):
        return table.to(like.device)[k].to(like.dtype if like.is_floating_point() else torch.float32)

    def total_noise(self, t):
        return self._table(-self.log_alpha_bar, self.step_index(t), t)

    def rate_noise(self, t):
        return self._table(self.betas, self.step_index(t), t)

    def __call__(self, t) -> DiscreteNoiseLevel:
        k = self.step_index(t)
        return DiscreteNoiseLevel(
            sigma=self._table(-self.log_alpha_bar, k, t), dsigma=self._table(self.betas, k, t), step=k
        )

    def coefficients(self, k_t: torch.Tensor, k_s: torch.Tensor, dtype=torch.float32) -> StepCoefficients:
        """The scalars of the reverse step k_t -> k_s < k_t, computed in float64 then cast."""
        if (k_s >= k_t).any() or (k_s < 0).any():
            raise ValueError("a reverse step needs 0 <= s < t")
        dev = k_t.device
        la = self.log_alpha_bar.to(dev)
        log_keep = la[k_t] - la[k_s]  # la[k_s] is finite: beta < 1 before T
        cast = lambda x: x.to(dtype)  # noqa: E731
        return StepCoefficients(
            alpha_s=cast(self.alpha_bar.to(dev)[k_s]),
            one_minus_alpha_s=cast(self.one_minus_alpha_bar.to(dev)[k_s]),
            alpha_t=cast(self.alpha_bar.to(dev)[k_t]),
            one_minus_alpha_t=cast(self.one_minus_alpha_bar.to(dev)[k_t]),
            keep=cast(log_keep.exp()),
            move=cast(-torch.expm1(log_keep)),
        )

    def to_dict(self):
        return {"num_timesteps": self.num_timesteps}


class DiscreteTimeSampler:
    """k ~ Uniform{1..T}, returned as t = k / T ([B]). ``antithetic``: one draw per stratum of the
    batch (MDLM's low-discrepancy sampler, on the integer grid)."""

    def __init__(self, num_timesteps: int, antithetic: bool = False):
        self.num_timesteps = num_timesteps
        self.antithetic = antithetic

    def __call__(self, batch_size: int, device=None, generator=None, dtype=torch.float32) -> torch.Tensor:
        u = torch.rand(batch_size, device=device, generator=generator, dtype=torch.float64)
        if self.antithetic:
            u = (u / batch_size + torch.arange(batch_size, device=device, dtype=torch.float64) / batch_size) % 1
        k = (u * self.num_timesteps).floor().clamp_max(self.num_timesteps - 1) + 1
        return (k / self.num_timesteps).to(dtype)


# --- closed forms ------------------------------------------------------------------------------
def log_stationary(graph: Graph, dtype=torch.float32, device=None) -> torch.Tensor:
    """log pi [V]: uniform -log V, or e_m for the absorbing graph (a finite log 0 off the mask)."""
    v = graph.vocab_size
    if graph.absorbing:
        out = torch.full((v,), neg_infinity(dtype), dtype=dtype, device=device)
        out[graph.mask_token_id] = 0.0
        return out
    return torch.full((v,), -torch.log(torch.tensor(float(v), dtype=torch.float64)).item(), dtype=dtype, device=device)


def _col(x: torch.Tensor) -> torch.Tensor:
    return x[:, None, None]


def log_transition_to(x_t, keep, move, log_pi) -> torch.Tensor:
    """log q(x_t | x_s = i) for every i: the x_t-th column of Q_{t|s} = keep I + move 1 pi^T, [B, L, V].

    Off the diagonal it is move * pi(x_t); at i = x_t it is keep + move * pi(x_t)."""
    pi_xt = log_pi.exp()[x_t]  # [B, L]
    off = _log(_col(move)[..., 0] * pi_xt)
    on = _log(_col(keep)[..., 0] + _col(move)[..., 0] * pi_xt)
    out = off.unsqueeze(-1).expand(*x_t.shape, log_pi.shape[0])
    return out.scatter(-1, x_t.unsqueeze(-1), on.unsqueeze(-1))


def mixture_log_weights(log_x0, x_t, alpha_t, one_minus_alpha_t, log_pi) -> torch.Tensor:
    """log w(v) ~ log p~(v) - log q(x_t | v), normalised over the v compatible with x_t: the weights
    that turn eq. 4's sum into the exact mixture sum_v p~(v) q(x_s | x_t, v).

    q(x_t | v) is (1 - alpha_bar_t) pi(x_t) for every v != x_t and alpha_bar_t + (1 - alpha_bar_t) pi(x_t)
    at v = x_t, so only the x_t entry is reweighted (by their ratio); when pi(x_t) = 0 (an unmasked
    token under absorbing noise) x_t is the only compatible v and w = onehot(x_t).
    """
    pi_xt = log_pi.exp()[x_t]
    a, abar = _col(alpha_t)[..., 0], _col(one_minus_alpha_t)[..., 0]
    log_off = _log(abar * pi_xt)  # log q(x_t | v != x_t)
    log_on = _log(a + abar * pi_xt)  # log q(x_t | v = x_t)
    compatible_off = (abar * pi_xt > 0).unsqueeze(-1)
    at_xt = torch.zeros_like(log_x0, dtype=torch.bool).scatter(-1, x_t.unsqueeze(-1), True)
    # subtract log q(x_t | v) - log q(x_t | v != x_t): 0 off x_t, log_on - log_off at x_t
    shift = torch.where(compatible_off[..., 0], log_on - log_off, 0.0).unsqueeze(-1)
    logw = torch.where(at_xt, log_x0 - shift, torch.where(compatible_off, log_x0, neg_infinity(log_x0.dtype)))
    return logw - torch.logsumexp(logw, dim=-1, keepdim=True)


def reverse_log_probs(log_w, x_t, coef: StepCoefficients, log_pi) -> torch.Tensor:
    """log p(x_s | x_t) [B, L, V] ~ log q(x_t | x_s) + log(alpha_bar_s w + (1 - alpha_bar_s) pi), for
    log-weights ``log_w`` over x0 that sum to one."""
    mix = torch.logaddexp(_log(_col(coef.alpha_s)) + log_w, _log(_col(coef.one_minus_alpha_s)) + log_pi)
    logits = log_transition_to(x_t, coef.keep, coef.move, log_pi) + mix
    return logits - torch.logsumexp(logits, dim=-1, keepdim=True)


def d3pm_reverse_log_probs(
    log_x0, x_t, coef: StepCoefficients, log_pi, parameterization: str = "mixture"
) -> torch.Tensor:
    """The x0-parameterised reverse step p_theta(x_s | x_t) from log p~(x0 | x_t).

    ``"paper"``: eq. 4, sum_{x0} q(x_s, x_t | x0) p~(x0 | x_t). Exact (equal to the true reverse
    step when p~ is the true posterior) for absorbing noise only: for uniform noise it weights p~,
    which already conditions on x_t, by q(x_t | x0) a second time.
    ``"mixture"``: sum_{x0} p~(x0 | x_t) q(x_s | x_t, x0), exact for every kernel.
    Both use the same formula at s = 0 (alpha_bar_0 = 1); the official code instead returns p~
    itself at its last step (google-research d3pm ``p_logits``).
    """
    if parameterization == "mixture":
        log_w = mixture_log_weights(log_x0, x_t, coef.alpha_t, coef.one_minus_alpha_t, log_pi)
    elif parameterization == "paper":
        log_w = log_x0
    else:
        raise ValueError(f"parameterization must be 'paper' or 'mixture', got {parameterization!r}")
    return reverse_log_probs(log_w, x_t, coef, log_pi)


def posterior_log_probs(x0, x_t, coef: StepCoefficients, log_pi) -> torch.Tensor:
    """log q(x_s | x_t, x0) (eq. 3), [B, L, V]: the reverse step with w = onehot(x0)."""
    onehot = torch.full((*x0.shape, log_pi.shape[0]), neg_infinity(log_pi.dtype), dtype=log_pi.dtype, device=x0.device)
    return reverse_log_probs(onehot.scatter(-1, x0.unsqueeze(-1), 0.0), x_t, coef, log_pi)


def marginal_log_probs(x0, alpha_t, one_minus_alpha_t, log_pi) -> torch.Tensor:
    """log q(x_t | x0) = log(alpha_bar_t onehot(x0) + (1 - alpha_bar_t) pi), [B, L, V]."""
    onehot = torch.full((*x0.shape, log_pi.shape[0]), neg_infinity(log_pi.dtype), dtype=log_pi.dtype, device=x0.device)
    onehot = onehot.scatter(-1, x0.unsqueeze(-1), 0.0)
    return torch.logaddexp(_log(_col(alpha_t)) + onehot, _log(_col(one_minus_alpha_t)) + log_pi)


def prior_kl(x0, alpha_T, one_minus_alpha_T, graph: Graph) -> torch.Tensor:
    """KL(q(x_T | x0) || pi) per token [B, L], in closed form (no [V] tensor per token).

    Absorbing: 0 when alpha_bar_T = 0 (beta_T = 1), infinite otherwise. Uniform: q puts
    c = alpha_bar + (1 - alpha_bar)/K on x0 and (1 - alpha_bar)/K elsewhere, so
    KL = c log(cK) + (1 - c) log(1 - alpha_bar)."""
    a, abar = alpha_T.double()[:, None], one_minus_alpha_T.double()[:, None]
    if graph.absorbing:
        kl = torch.where(a > 0, torch.inf, 0.0)
    else:
        k = graph.vocab_size
        c = a + abar / k
        kl = c * torch.log(c * k) + torch.xlogy(1 - c, abar)
    return kl.expand(x0.shape).to(torch.float32)


__all__ = [
    "DiscreteNoiseLevel",
    "DiscreteTimeSampler",
    "DiscreteTimeSchedule",
    "StepCoefficients",
    "d3pm_reverse_log_probs",
    "log_stationary",
    "log_transition_to",
    "marginal_log_probs",
    "mixture_log_weights",
    "posterior_log_probs",
    "prior_kl",
    "reverse_log_probs",
]
