"""Tau-leaping for categorical data (Campbell et al. 2022, sec. 4.1), with the x0-parameterised
reverse rates in closed form, and its Euler variant.

Over a step of size h = t - s the reverse rates R-hat_t(x, .) are frozen. Per position the jumps to
each target y are Poisson(h R-hat(y)); their total N is Poisson(h Lambda), Lambda = sum_y R-hat(y),
and given N = 1 the target is y with probability R-hat(y) / Lambda. Tokens are categorical, so a
position that draws N >= 2 jumps keeps its token (the "reject multiple jumps" rule; summing the
jumps as signed displacements is only meaningful for ordinal data, and the official
``ConditionalTauLeaping`` recomputes the displacement after the rejection, undoing it). Hence

    P(x^d -> y) = h R-hat(y) e^{-h Lambda}   (y != x^d),        P(stay) = 1 - h Lambda e^{-h Lambda}.

Under absorbing noise a jumped (unmasked) token has no rate left, so the first jump is the only one
(N >= 1 moves), and the rate's time dependence is integrated exactly over the step: per position
this is the exact unmasking probability (alpha_s - alpha_t)/(1 - alpha_t), and the only error left
is the factorisation over positions.

Cost. Every rate here has the form R-hat(y) = a u(y) + c p~(y) for y != x^d, with u uniform over the
other tokens (uniform noise) or the mask (absorbing), and a, c scalars per position:

    uniform:   a = dsigma/N [(1 - p_x) + p_x E/(N + E)],  c = dsigma / E     (E = e^sigma - 1)
    absorbing: a = 0,  c = dsigma / E at masked positions (0 elsewhere).

So Lambda needs only p~(x^d) (a gather), one Poisson count per position decides the move, and a
categorical over the vocabulary is drawn only where a token jumps to a p~-distributed target:
O(B L) + O(moves x V) per step, never S Poisson variates. ``return_probs=True`` also returns the
full per-position transition probabilities (O(B L V); for tests and analysis).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..categorical import draw_categorical_rows
from ..processes.graphs import Graph, uniform_ratio_offset
from ..processes.schedules import NoiseSchedule
from .base import Sampler, SamplerOutput, register_sampler

JUMP_RULES = ("poisson", "euler")


@dataclass
class RateTerms:
    """R(y) = a u(y) + c p~(y) for y != x per position ([B, L] each); ``u`` is ``"uniform"`` (every
    other token) or ``"mask"`` (the mask token only)."""

    a: torch.Tensor
    c: torch.Tensor
    u: str


def reverse_rate_terms(
    graph: Graph, schedule: NoiseSchedule, log_p0: torch.Tensor, x_t: torch.LongTensor, t: torch.Tensor
) -> RateTerms:
    """R-hat_t(x_t, .) from p~(x0 | x_t): the closed forms of the module docstring."""
    level = schedule(t)
    sigma, dsigma = level.sigma.float()[:, None], level.dsigma.float()[:, None]
    esigm1 = torch.expm1(sigma).clamp_min(1e-30)
    if graph.absorbing:
        c = torch.where(x_t == graph.mask_token_id, dsigma / esigm1, 0.0)
        return RateTerms(torch.zeros_like(c), c, "mask")
    n = graph.vocab_size
    log_px = torch.gather(log_p0.float(), -1, x_t.unsqueeze(-1)).squeeze(-1).clamp_max(0.0)
    stay = uniform_ratio_offset(log_px, esigm1, n)
    return RateTerms(dsigma / n * stay, (dsigma / esigm1).expand_as(stay), "uniform")


def forward_rate_terms(graph: Graph, schedule: NoiseSchedule, x_t: torch.LongTensor, t: torch.Tensor) -> RateTerms:
    """The forward rates out of x_t, R_t(x_t, .) = dsigma Q(x_t, .), in the same form (c = 0)."""
    dsigma = schedule(t).dsigma.float()[:, None].expand(x_t.shape)
    if graph.absorbing:
        return RateTerms(torch.where(x_t != graph.mask_token_id, dsigma, 0.0), torch.zeros_like(dsigma), "mask")
    return RateTerms(dsigma / graph.vocab_size, torch.zeros_like(dsigma), "uniform")


def full_rates(terms: RateTerms, graph: Graph, log_p0: torch.Tensor, x_t: torch.LongTensor) -> torch.Tensor:
    """The rate terms as a [B, L, V] tensor (0 at x^d)."""
    v = graph.vocab_size
    if terms.u == "uniform":
        base = terms.a.unsqueeze(-1).expand(*x_t.shape, v)
    else:
        base = torch.zeros(*x_t.shape, v, device=x_t.device, dtype=terms.a.dtype)
        base[..., graph.mask_token_id] = terms.a
    rates = base + terms.c.unsqueeze(-1) * log_p0.float().exp()
    return rates.scatter(-1, x_t.unsqueeze(-1), 0.0).clamp_min(0.0)


def reverse_rates(
    graph: Graph, schedule: NoiseSchedule, log_p0: torch.Tensor, x_t: torch.LongTensor, t: torch.Tensor
) -> torch.Tensor:
    """R-hat_t(x_t, y) for every y ([B, L, V], 0 at x^d). For analysis and tests; samplers use the terms."""
    return full_rates(reverse_rate_terms(graph, schedule, log_p0, x_t, t), graph, log_p0, x_t)


def _scale(terms: RateTerms, a_scale: torch.Tensor, c_scale: torch.Tensor | None = None) -> RateTerms:
    c_scale = a_scale if c_scale is None else c_scale
    return RateTerms(terms.a * a_scale, terms.c * c_scale, terms.u)


def predictor_hazards(
    graph: Graph,
    schedule: NoiseSchedule,
    log_p0: torch.Tensor,
    x_t: torch.LongTensor,
    t: torch.Tensor,
    s: torch.Tensor,
) -> RateTerms:
    """Expected jump counts over the step t -> s, as rate terms: h R-hat_t for uniform noise; for
    absorbing noise the exact integral log((1 - alpha_t)/(1 - alpha_s)) p~(y) at masked positions
    (finite even at t = 1 when alpha_1 = 0, where dsigma and e^sigma - 1 are both infinite)."""
    if not graph.absorbing:
        return _scale(reverse_rate_terms(graph, schedule, log_p0, x_t, t), (t - s).float()[:, None])
    hazard = (schedule(t).mask_prob.double().log() - schedule(s).mask_prob.double().log()).float()[:, None]
    c = torch.where(x_t == graph.mask_token_id, hazard, 0.0)
    return RateTerms(torch.zeros_like(c), c, "mask")


def _move_probability(lam: torch.Tensor, rule: str, first_jump: bool) -> torch.Tensor:
    if rule == "poisson":
        return -torch.expm1(-lam) if first_jump else lam * torch.exp(-lam)
    if rule == "euler":
        return lam.clamp_max(1.0)
    raise ValueError(f"jump rule must be one of {JUMP_RULES}, got {rule!r}")


def categorical_leap(
    hazards: RateTerms,
    graph: Graph,
    log_p0: torch.Tensor,
    x: torch.LongTensor,
    rule: str = "poisson",
    first_jump: bool = False,
    generator: torch.Generator | None = None,
    uniform_noise: torch.Tensor | None = None,
    return_probs: bool = False,
) -> SamplerOutput:
    """One leap with expected jump counts H(y) = a u(y) + c p~(y) (y != x), per position.

    ``rule="poisson"``: N ~ Poisson(sum_y H) per position; the token moves when N = 1 (N >= 2:
    rejected), or when N >= 1 with ``first_jump`` (a chain whose jumped tokens cannot move again).
    ``rule="euler"``: it moves to y with probability H(y) (first order; the total capped at 1)."""
    v = graph.vocab_size
    p_x = torch.gather(log_p0.float(), -1, x.unsqueeze(-1)).squeeze(-1).exp()
    if hazards.u == "uniform":
        n_u = torch.full(x.shape, float(v - 1), device=x.device)
    else:
        n_u = (x != graph.mask_token_id).float()
    from_u = hazards.a * n_u
    from_p = hazards.c * (1 - p_x).clamp_min(0.0)
    lam = from_u + from_p
    p_move = _move_probability(lam, rule, first_jump)
    if rule == "poisson":
        n = torch.poisson(lam, generator=generator)
        move = (n >= 1) if first_jump else (n == 1)
    else:
        move = torch.rand(lam.shape, generator=generator, device=lam.device) < p_move
    move = move & (lam > 0)
    pick_p = torch.rand(lam.shape, generator=generator, device=lam.device) * lam < from_p
    x_new = x.clone()
    rows_u = move & ~pick_p
    if rows_u.any():
        if hazards.u == "uniform":
            shift = torch.randint(1, v, (int(rows_u.sum()),), generator=generator, device=x.device)
            x_new[rows_u] = (x[rows_u] + shift) % v
        else:
            x_new[rows_u] = graph.mask_token_id
    rows_p = move & pick_p
    if rows_p.any():  # p~ without the current token
        x_new[rows_p] = draw_categorical_rows(log_p0, rows_p, generator, uniform_noise, exclude=x[rows_p])
    probs = None
    if return_probs:
        rates = full_rates(hazards, graph, log_p0, x)
        probs = torch.where(lam[..., None] > 0, rates / lam.clamp_min(1e-30)[..., None], 0.0) * p_move[..., None]
        probs = probs.scatter(-1, x.unsqueeze(-1), (1 - p_move).unsqueeze(-1))
    return SamplerOutput(x_new, probs)


def denoise_x0(
    graph: Graph,
    model_output: torch.Tensor,
    x_t: torch.LongTensor,
    final_step: str = "argmax",
    generator: torch.Generator | None = None,
    uniform_noise: torch.Tensor | None = None,
    return_probs: bool = False,
) -> SamplerOutput:
    """The last step at t_min: x0 from p~(x0 | x_t) per position, by argmax (tau-LDR) or by a draw.
    Under absorbing noise unmasked tokens are kept."""
    keep = (x_t != graph.mask_token_id) if graph.absorbing else torch.zeros_like(x_t, dtype=torch.bool)
    if final_step == "argmax":
        x0 = model_output.argmax(-1)
    elif final_step == "sample":
        x0 = x_t.clone()
        rows = ~keep
        if rows.any():
            x0[rows] = draw_categorical_rows(model_output, rows, generator, uniform_noise)
    else:
        raise ValueError(f"final_step must be 'argmax' or 'sample', got {final_step!r}")
    x0 = torch.where(keep, x_t, x0)
    probs = None
    if return_probs:
        probs = model_output.float().exp()
        probs = torch.where(keep.unsqueeze(-1), torch.nn.functional.one_hot(x_t, probs.shape[-1]).float(), probs)
    return SamplerOutput(x0, probs)


@register_sampler
class TauLeapingSampler(Sampler):
    """Tau-leaping with categorical rejection of multiple jumps (see the module docstring).

    Args:
        final_step: ``"argmax"`` (tau-LDR's final step) or ``"sample"`` for the denoising step at t_min.
        return_probs: also return each step's exact per-position transition probabilities [B, L, V].
    """

    name = "tau_leaping"
    needs = "log_probs"
    jump_rule = "poisson"

    def __init__(self, graph: Graph, schedule: NoiseSchedule, final_step: str = "argmax", return_probs: bool = False):
        super().__init__(graph, schedule)
        if final_step not in ("argmax", "sample"):
            raise ValueError(f"final_step must be 'argmax' or 'sample', got {final_step!r}")
        self.final_step = final_step
        self.return_probs = return_probs

    def step(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        s: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        hazards = predictor_hazards(self.graph, self.schedule, model_output, x_t, t, s)
        return categorical_leap(
            hazards,
            self.graph,
            model_output,
            x_t,
            self.jump_rule,
            self.graph.absorbing,
            generator,
            uniform_noise,
            self.return_probs,
        )

    def denoise(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        return denoise_x0(self.graph, model_output, x_t, self.final_step, generator, uniform_noise, self.return_probs)


@register_sampler
class CTMCEulerSampler(TauLeapingSampler):
    """The Euler variant: P(x^d -> y) = h R-hat(y), P(stay) = 1 - h Lambda (capped at 1)."""

    name = "ctmc_euler"
    jump_rule = "euler"


__all__ = [
    "CTMCEulerSampler",
    "JUMP_RULES",
    "RateTerms",
    "TauLeapingSampler",
    "categorical_leap",
    "denoise_x0",
    "forward_rate_terms",
    "full_rates",
    "predictor_hazards",
    "reverse_rate_terms",
    "reverse_rates",
]
