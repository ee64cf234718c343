"""The forward processes against their definitions, on a vocabulary small enough for dense algebra.

The dense rate matrices are built here from the definitions (SEDD's convention: columns sum to
zero, Q[y, x] is the rate of jumping x -> y):

* absorbing (mask M = V - 1): Q = e_M 1^T - I,
* uniform (N = V):            Q = (1 1^T - N I) / N,

and every closed form of ``hf_ddlm.processes`` is compared with ``torch.linalg.matrix_exp`` in
float64. The score entropy is compared with the brute-force denoising score entropy
sum_{y != x_t} Q(x_t, y) [s_y - r_y log s_y + K(r_y)], K(a) = a (log a - 1) (SEDD eq. 10).
"""

import math

import pytest
import torch

from hf_ddlm.processes import (
    AbsorbingGraph,
    GeometricSchedule,
    LogLinearSchedule,
    TimeSampler,
    UniformGraph,
    get_graph,
    get_schedule,
)
from hf_ddlm.processes.schedules import SCHEDULES

V = 6
SIGMAS = [1e-4, 0.3, 2.0, 6.9]
GRAPHS = {"absorbing": AbsorbingGraph, "uniform": UniformGraph}


def dense_q(kind: str, n: int = V) -> torch.Tensor:
    ones = torch.ones(n, n, dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.float64)
    if kind == "absorbing":
        e_mask = torch.zeros(n, 1, dtype=torch.float64)
        e_mask[-1] = 1.0
        return e_mask @ ones[:1] - eye
    return (ones - n * eye) / n


def kernel(kind, sigma):
    """exp(sigma Q): column x0 is the law of x_t given x0."""
    return torch.linalg.matrix_exp(sigma * dense_q(kind))


@pytest.mark.parametrize("kind", GRAPHS)
def test_dense_rate_matrix_is_a_generator(kind):
    q = dense_q(kind)
    torch.testing.assert_close(q.sum(0), torch.zeros(V, dtype=torch.float64))
    off = q - torch.diag(torch.diag(q))
    assert (off >= 0).all()


@pytest.mark.parametrize("kind", GRAPHS)
@pytest.mark.parametrize("sigma", SIGMAS)
def test_transp_transition_is_a_row_of_the_matrix_exponential(kind, sigma):
    graph = GRAPHS[kind](V)
    x = torch.arange(V)[None]  # every state, as one sequence
    rows = graph.transp_transition(x, torch.tensor([sigma], dtype=torch.float64))[0]
    torch.testing.assert_close(rows, kernel(kind, sigma), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", GRAPHS)
def test_marginal_of_sample_xt(kind):
    """q(x_t | x0) = exp(sigma Q)[:, x0], checked on 40k draws per clean state (5 standard errors)."""
    graph = GRAPHS[kind](V)
    sigma, n = 0.7, 40_000
    g = torch.Generator().manual_seed(0)
    clean = V - 1 if kind == "absorbing" else V
    x0 = torch.arange(clean).repeat_interleave(n)[None]
    x_t = graph.sample_xt(x0, torch.tensor([sigma]), generator=g)[0].view(clean, n)
    expected = kernel(kind, sigma)[:, :clean].T  # [x0, y]
    empirical = torch.nn.functional.one_hot(x_t, V).double().mean(1)
    stderr = (expected * (1 - expected) / n).sqrt()
    assert ((empirical - expected).abs() <= 5 * stderr + 1e-12).all(), (empirical, expected)


def test_absorbing_sample_xt_masks_exactly_when_u_is_below_the_move_chance():
    graph = AbsorbingGraph(V)
    sigma = torch.tensor([0.5])
    move = 1 - math.exp(-0.5)
    u = torch.tensor([[move - 1e-4, move + 1e-4, 0.0, 0.999]])
    x_t = graph.sample_xt(torch.tensor([[1, 2, 3, 4]]), sigma, uniform_noise=u)
    assert x_t.tolist() == [[V - 1, 2, V - 1, 4]]


@pytest.mark.parametrize("kind", GRAPHS)
def test_prior_is_the_limit_of_the_forward_process(kind):
    graph = GRAPHS[kind](V)
    limit = kernel(kind, 60.0)[:, 0]  # sigma -> inf: every column converges to the prior
    draws = graph.sample_prior((20_000,), generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(draws, minlength=V).double() / len(draws)
    torch.testing.assert_close(freq, limit, atol=0.015, rtol=0)


@pytest.mark.parametrize("kind", GRAPHS)
def test_reverse_rate(kind):
    """reverse_rate(x, s)[y] = s_y Q[x, y] for y != x, and the row sums to zero."""
    graph = GRAPHS[kind](V)
    g = torch.Generator().manual_seed(2)
    q = dense_q(kind)
    x = torch.arange(V)[None]
    score = torch.rand(1, V, V, generator=g, dtype=torch.float64) * 3
    rate = graph.reverse_rate(x, score)[0]
    expected = score[0] * q  # row x: s(x)_y Q[x, y]
    expected = expected - torch.diag(torch.diag(expected))
    expected = expected - torch.diag(expected.sum(1))
    torch.testing.assert_close(rate, expected)
    torch.testing.assert_close(rate.sum(-1), torch.zeros(V, dtype=torch.float64))


@pytest.mark.parametrize("kind", GRAPHS)
@pytest.mark.parametrize("dsigma", [1e-3, 0.25, 3.0])
def test_staggered_score_is_exp_minus_dsigma_q_times_score(kind, dsigma):
    graph = GRAPHS[kind](V)
    score = torch.rand(4, 3, V, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = graph.staggered_score(score.clone(), torch.full((4, 1), dsigma, dtype=torch.float64))
    expected = torch.einsum("yx,blx->bly", torch.linalg.matrix_exp(-dsigma * dense_q(kind)), score)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", GRAPHS)
def test_analytic_step_with_true_ratios_is_the_exact_posterior(kind):
    """For one token, Tweedie tau-leaping with the true ratios p_t(y)/p_t(x_t) is exact:
    p(x_s = y | x_t) = p_s(y) exp(dsigma Q)[x_t, y] / p_t(x_t)."""
    graph = GRAPHS[kind](V)
    clean = V - 1 if kind == "absorbing" else V
    p0 = torch.zeros(V, dtype=torch.float64)
    p0[:clean] = torch.rand(clean, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.1
    p0 /= p0.sum()
    sigma_t, sigma_s = 1.3, 0.4
    p_t, p_s = kernel(kind, sigma_t) @ p0, kernel(kind, sigma_s) @ p0
    step = kernel(kind, sigma_t - sigma_s)  # column y: law of x_t given x_s = y
    for x in range(V):
        if p_t[x] == 0:
            continue
        score = (p_t / p_t[x])[None, None]
        dsig = torch.tensor([[sigma_t - sigma_s]], dtype=torch.float64)
        probs = graph.staggered_score(score, dsig) * graph.transp_transition(torch.tensor([[x]]), dsig)
        expected = p_s * step[x] / p_t[x]
        torch.testing.assert_close(probs[0, 0], expected, rtol=1e-9, atol=1e-12)


# --- schedules --------------------------------------------------------------------------------
SCHEDULE_CASES = [
    LogLinearSchedule(1e-3),
    LogLinearSchedule(0.0),
    GeometricSchedule(1e-4, 20.0),
    GeometricSchedule(1e-3, 1.0),
]
# and every other registered schedule, at its defaults
SCHEDULE_CASES += [cls() for name, cls in sorted(SCHEDULES.items()) if name not in ("loglinear", "geometric")]


@pytest.mark.parametrize("schedule", SCHEDULE_CASES, ids=lambda s: f"{s.name}{s.to_dict()}")
def test_dsigma_is_the_derivative_of_sigma(schedule):
    t = torch.linspace(0.0, 0.99, 23, dtype=torch.float64, requires_grad=True)
    level = schedule(t)
    (grad,) = torch.autograd.grad(level.sigma.sum(), t)
    torch.testing.assert_close(level.dsigma.detach(), grad, rtol=1e-10, atol=1e-12)
    assert (level.dsigma > 0).all()


def test_loglinear_mask_probability_is_linear_in_t():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    for eps in (1e-3, 0.0, 0.2):
        level = LogLinearSchedule(eps)(t[:-1] if eps == 0 else t)
        tt = t[:-1] if eps == 0 else t
        torch.testing.assert_close(level.mask_prob, (1 - eps) * tt, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(level.alpha, 1 - (1 - eps) * tt, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(level.dalpha, torch.full_like(tt, -(1 - eps)), rtol=1e-12, atol=1e-15)
    assert torch.isinf(LogLinearSchedule(0.0).total_noise(torch.tensor(1.0)))


def test_geometric_endpoints_and_expm1():
    schedule = GeometricSchedule(1e-4, 20.0)
    level = schedule(torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(level.sigma, torch.tensor([1e-4, 20.0], dtype=torch.float64))
    torch.testing.assert_close(level.expm1_sigma, torch.expm1(level.sigma), rtol=1e-12, atol=0)


def test_registries_reject_unknown_names():
    with pytest.raises(ValueError, match="noise_schedule"):
        get_schedule("no_such_schedule")
    with pytest.raises(ValueError, match="graph"):
        get_graph("gaussian", 5)
    assert isinstance(get_graph("absorb", 5), AbsorbingGraph)
    with pytest.raises(ValueError, match="noise_eps"):
        LogLinearSchedule(1.0)
    with pytest.raises(ValueError, match="sigma_min"):
        GeometricSchedule(2.0, 1.0)
    with pytest.raises(ValueError, match="sampling_eps"):
        TimeSampler(-0.1)


# --- time sampling ----------------------------------------------------------------------------
@pytest.mark.parametrize("antithetic", [False, True])
def test_time_sampler_range(antithetic):
    eps = 1e-3
    t = TimeSampler(eps, antithetic)(4096, generator=torch.Generator().manual_seed(0))
    assert t.shape == (4096,)
    assert (t >= eps).all() and (t <= 1).all()
    # marginally uniform on [eps, 1]
    assert abs(t.mean().item() - (1 + eps) / 2) < 4 * (1 - eps) / math.sqrt(12 * 4096)


def test_antithetic_time_sampler_puts_one_draw_in_each_stratum():
    eps, n = 1e-3, 64
    for seed in range(5):
        t = TimeSampler(eps, antithetic=True)(n, generator=torch.Generator().manual_seed(seed))
        stratum = torch.floor((t.double() - eps) / (1 - eps) * n).long().clamp(max=n - 1)
        assert torch.equal(stratum, torch.arange(n)), t


# --- score entropy ----------------------------------------------------------------------------
def brute_force_dse(kind, log_score, sigma, x_t, x0):
    """sum_{y != x_t} Q(x_t, y) [s_y - r_y log s_y + K(r_y)], r_y = q(y | x0) / q(x_t | x0), in float64."""
    q, k = dense_q(kind), kernel(kind, sigma)
    total = torch.zeros((), dtype=torch.float64)
    for y in range(V):
        if y == x_t or q[x_t, y] == 0:
            continue
        r = k[y, x0] / k[x_t, x0]
        s = log_score[y].exp()
        k_r = r * (r.log() - 1) if r > 0 else torch.zeros((), dtype=torch.float64)
        r_log_s = r * log_score[y] if r > 0 else torch.zeros((), dtype=torch.float64)
        total = total + q[x_t, y] * (s - r_log_s + k_r)
    return total


def _pairs(kind):
    clean = V - 1 if kind == "absorbing" else V
    states = range(V)
    return [(x_t, x0) for x0 in range(clean) for x_t in states if kernel(kind, 1.0)[x_t, x0] > 0]


@pytest.mark.parametrize("kind", GRAPHS)
@pytest.mark.parametrize("sigma", SIGMAS)
def test_score_entropy_equals_brute_force_dse(kind, sigma):
    graph = GRAPHS[kind](V)
    pairs = _pairs(kind)
    x_t = torch.tensor([p[0] for p in pairs])[None]
    x0 = torch.tensor([p[1] for p in pairs])[None]
    g = torch.Generator().manual_seed(5)
    log_score = torch.randn(1, len(pairs), V, generator=g, dtype=torch.float64) * 2
    log_score.scatter_(-1, x_t[..., None], 0.0)  # the model's convention: log s = 0 at x_t
    out = graph.score_entropy(log_score, torch.tensor([[sigma]], dtype=torch.float64), x_t, x0)[0]
    expected = torch.stack([brute_force_dse(kind, log_score[0, i], sigma, *pairs[i]) for i in range(len(pairs))])
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
    assert (out >= -1e-9).all()
    if kind == "absorbing":
        assert (out[x_t[0] != V - 1] == 0).all()  # Q(x_t, y) = 0 off the mask


@pytest.mark.parametrize("kind", GRAPHS)
@pytest.mark.parametrize("sigma", SIGMAS)
def test_score_entropy_is_zero_at_the_true_ratios_and_positive_elsewhere(kind, sigma):
    graph = GRAPHS[kind](V)
    pairs = _pairs(kind)
    x_t = torch.tensor([p[0] for p in pairs])[None]
    x0 = torch.tensor([p[1] for p in pairs])[None]
    k = kernel(kind, sigma)
    # the true conditional ratios r_y = q(y | x0) / q(x_t | x0) (log 0 = -inf where unreachable)
    true = torch.stack([(k[:, b] / k[a, b]).log() for a, b in pairs])[None]
    sig = torch.tensor([[sigma]], dtype=torch.float64)
    at_truth = graph.score_entropy(true, sig, x_t, x0)[0]
    scale = 1 + torch.stack([(k[:, b] / k[a, b]).abs().max() for a, b in pairs])
    scale = scale * (1 + scale.log())  # the size of the cancelling terms r log r
    # 1e-11, not float64's 1e-16: like the official code, the uniform graph computes
    # rho = 1 - N / (E + N), which loses ~log10(N / E) digits at small sigma
    assert (at_truth.abs() <= 1e-11 * scale).all(), at_truth
    g = torch.Generator().manual_seed(6)
    for _ in range(3):
        perturbed = true + torch.randn(true.shape, generator=g, dtype=torch.float64) * 0.5
        perturbed.scatter_(-1, x_t[..., None], 0.0)
        perturbed = torch.where(torch.isinf(true), true, perturbed)
        out = graph.score_entropy(perturbed, sig, x_t, x0)[0]
        assert (out >= -1e-11 * scale).all()
        moved = (perturbed - true)[0].abs().nan_to_num(0.0).amax(-1) > 1e-3
        relevant = moved & (x_t[0] == V - 1) if kind == "absorbing" else moved
        assert (out[relevant] > 0).all()
