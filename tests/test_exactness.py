"""Exactness with an oracle: the models driven by the exact scores / posteriors of an enumerable p_data.

``ExactOracle`` (``hf_ddlm.testing``) enumerates a full-support p_data over length-3
sequences on a 3-token clean vocabulary and computes, from the definition of the forward kernel,
p(x0^i | x_t) and the concrete score p_t(y) / p_t(x_t). ``oracle_model`` plugs them into
``SEDDForDiffusionLM`` / ``MDLMForDiffusionLM`` through the backbone, so the models' own
parameterization, objective, ``negative_elbo`` and ``generate`` run on exact quantities. Then:

* with sigma(1) = inf (log-linear, noise_eps = 0) the continuous-time NELBO of the exact model
  is tight: it equals -log p_data(x0) for every x0 (absorbing and uniform graphs). We check the
  integral over t by Gauss-Legendre quadrature with x_t enumerated (deterministic), and the
  Monte-Carlo ``negative_elbo`` against its standard error;
* one step of every sampler with the exact model is the exact per-position reverse marginal
  p(x_s^i | x_t) (Tweedie tau-leaping; ancestral; Euler too for absorbing + log-linear);
* sampling with the exact model reaches p_data as the number of steps grows (the only error of
  the tau-leaping / ancestral steps is that positions move independently within one step).
"""

import itertools
import math

import numpy as np
import pytest
import torch

from hf_ddlm import MDLMForDiffusionLM, SEDDForDiffusionLM
from hf_ddlm.testing import ExactOracle, oracle_model

LENGTH = 3
CLEAN = 3  # clean tokens; the absorbing graph adds the mask


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # thousands of tiny [B, 3, 4] ops: intra-op threads only add synchronisation (10x slower on a
    # shared 2-core machine); results do not depend on the thread count
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_oracle(graph, seed=0):
    return ExactOracle.random(CLEAN + int(graph == "absorbing"), LENGTH, graph=graph, seed=seed)


# the models driven by the oracle (the tiny random models are hf_ddlm.testing.MODELS)
ORACLE_MODELS = {
    "mdlm": (MDLMForDiffusionLM, "absorbing", {}),
    "sedd_absorb": (SEDDForDiffusionLM, "absorbing", {"scale_by_sigma": True}),
    "sedd_uniform": (SEDDForDiffusionLM, "uniform", {}),
}


def build(name, oracle=None, dtype=torch.float32, **overrides):
    cls, graph, kw = ORACLE_MODELS[name]
    oracle = oracle if oracle is not None else make_oracle(graph)
    return oracle_model(cls, oracle, dtype=dtype, **kw, **overrides), oracle


# --- the oracle itself ------------------------------------------------------------------------
@pytest.mark.parametrize("graph", ["absorbing", "uniform"])
def test_oracle_marginal_is_a_distribution_and_score_is_a_ratio_of_marginals(graph):
    oracle = make_oracle(graph)
    v = oracle.vocab_size
    states = torch.tensor(list(itertools.product(range(v), repeat=LENGTH)))
    sigma = torch.full((len(states),), 0.8, dtype=torch.float64)
    marginal = oracle.marginal(states, sigma)
    torch.testing.assert_close(marginal.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(oracle.marginal(oracle.sequences, torch.zeros(len(oracle.sequences))), oracle.probs)
    score = oracle.score(states, sigma)
    for i, y in itertools.product(range(LENGTH), range(v)):
        neighbour = states.clone()
        neighbour[:, i] = y
        torch.testing.assert_close(score[:, i, y], oracle.marginal(neighbour, sigma) / marginal)
    posterior = oracle.posterior(states, sigma)
    torch.testing.assert_close(posterior.sum(-1), torch.ones(len(states), LENGTH, dtype=torch.float64))


def test_oracle_absorbing_score_is_posterior_over_expm1_sigma():
    """RADD thm 1: at a masked position s(x_t)_y = p(x0^i = y | x_t) / (e^sigma - 1)."""
    oracle = make_oracle("absorbing")
    states = torch.tensor(list(itertools.product(range(oracle.vocab_size), repeat=LENGTH)))
    for sigma in (1e-3, 0.5, 4.0):
        s = torch.full((len(states),), sigma, dtype=torch.float64)
        masked = states == oracle.mask_token_id
        expected = oracle.posterior(states)[..., :-1] / math.expm1(sigma)
        torch.testing.assert_close(oracle.score(states, s)[..., :-1][masked], expected[masked])


@pytest.mark.parametrize("name", list(ORACLE_MODELS))
def test_oracle_model_outputs_the_exact_quantities(name):
    model, oracle = build(name, dtype=torch.float64)
    states = torch.tensor(list(itertools.product(range(oracle.vocab_size), repeat=LENGTH)))
    t = torch.full((len(states),), 0.37)
    with torch.no_grad():
        out = model(input_ids=states, timesteps=t).logits
    sigma = model.schedule(t).sigma.double()
    if name == "mdlm":
        masked = states == oracle.mask_token_id
        torch.testing.assert_close(out.exp()[masked], oracle.posterior(states)[masked])
    else:
        exact = oracle.log_score(states, sigma)
        rows = torch.ones_like(states, dtype=torch.bool)
        if oracle.graph == "absorbing":  # unmasked positions have no move and no score
            rows = states == oracle.mask_token_id
        torch.testing.assert_close(out[rows], exact[rows])


# --- the NELBO of the exact model is the NLL --------------------------------------------------
def quadrature_nelbo(model, oracle, nodes):
    """int_0^1 E_{x_t ~ q_t(. | x0)} [sum_i loss_i(x_t, t)] dt for every x0 of the support, with
    x_t enumerated exactly and t = u^2 on Gauss-Legendre nodes in u (the integrand is steepest at
    t -> 0 for the uniform graph). Returns [K] float64."""
    states = torch.tensor(list(itertools.product(range(oracle.vocab_size), repeat=LENGTH)))
    x0 = oracle.sequences
    k, s = len(x0), len(states)
    labels, x_t = x0.repeat_interleave(s, 0), states.repeat(k, 1)
    u, w = np.polynomial.legendre.leggauss(nodes)
    u, w = (u + 1) / 2, w / 2
    total = torch.zeros(k, dtype=torch.float64)
    for node, weight in zip(u, w):
        t = float(node) ** 2
        sigma = model.schedule(torch.tensor([t], dtype=torch.float64)).sigma
        table = oracle.kernel(sigma)[0]  # [K, L, V]: q_t(y | x0^j)
        lik = torch.stack([table[:, j][:, states[:, j]] for j in range(LENGTH)], -1).prod(-1)  # [K, S]
        reachable = lik.reshape(-1) > 0
        loss = torch.zeros(k * s, dtype=torch.float64)
        times = torch.full((int(reachable.sum()),), t)
        with torch.no_grad():
            out = model(input_ids=x_t[reachable], timesteps=times, labels=labels[reachable])
        loss[reachable] = out.loss_per_token.double().sum(-1)
        total += 2 * node * weight * (lik * loss.view(k, s)).sum(-1)
    return total


@pytest.mark.parametrize(
    "name,dtype,nodes,tol",
    [
        # absorbing, log-linear, eps = 0: the integrand is a polynomial in t, so few nodes are exact
        ("mdlm", torch.float32, 8, 2e-6),
        ("sedd_absorb", torch.float32, 8, 2e-6),
        ("sedd_uniform", torch.float64, 48, 2e-5),
    ],
)
def test_nelbo_integral_of_the_exact_model_equals_the_nll(name, dtype, nodes, tol):
    model, oracle = build(name, dtype=dtype, noise_eps=0.0)
    nelbo = quadrature_nelbo(model, oracle, nodes)
    nll = -oracle.log_prob(oracle.sequences)
    torch.testing.assert_close(nelbo, nll, rtol=0, atol=tol)


def test_nelbo_integral_tracks_the_model_distribution():
    """A negative control: the exact model of another distribution q gives -log q(x), not -log p(x)."""
    p, q = make_oracle("absorbing", seed=0), make_oracle("absorbing", seed=1)
    model, _ = build("mdlm", oracle=q, noise_eps=0.0)
    nelbo = quadrature_nelbo(model, p, 8)  # x0 over p's support (the same sequences), model of q
    torch.testing.assert_close(nelbo, -q.log_prob(p.sequences), rtol=0, atol=2e-6)
    assert (nelbo - (-p.log_prob(p.sequences))).abs().max() > 0.5


@pytest.mark.parametrize("name", ["mdlm", "sedd_absorb"])
def test_monte_carlo_negative_elbo_equals_the_nll_per_sequence(name):
    """Absorbing graph: ``negative_elbo`` (t_min = 0) is an unbiased estimate of -log p(x0) for
    every x0; R independent replicates of each sequence give its standard error.

    The estimator is heavy-tailed: a token masked at a tiny t costs -log p / t, and t has density
    ~ t near 0 given a mask, so P(cost > c) ~ 1/c^2 and the sample std understates the error of a
    single sequence's mean (about one seed in 30 reaches 5 standard errors). Each sequence is
    therefore held to 6 standard errors; the average over p_data, which pools the tails, to 4."""
    model, oracle = build(name, noise_eps=0.0)
    replicates, num_samples = 48, 16
    x = oracle.sequences.repeat_interleave(replicates, 0)
    g = torch.Generator().manual_seed(1)
    nelbo = model.negative_elbo(x, num_samples=num_samples, generator=g, t_min=0.0).double().view(-1, replicates)
    mean, stderr = nelbo.mean(1), nelbo.std(1) / math.sqrt(replicates)
    nll = -oracle.log_prob(oracle.sequences)
    assert (stderr > 0).all()
    z = (mean - nll) / stderr
    assert (z.abs() < 6).all(), z
    # and over the data distribution: the NELBO averages to the entropy of p_data
    agg = (oracle.probs * mean).sum()
    agg_se = ((oracle.probs * stderr) ** 2).sum().sqrt()
    assert abs(agg - oracle.entropy()) < 4 * agg_se


def test_monte_carlo_negative_elbo_bounds_the_nll_uniform():
    """Uniform graph: over x0 ~ p_data, E[negative_elbo] >= H(p_data) within the error (and, the
    exact model being tight, not above it either). Per sequence the estimator is heavy-tailed
    (rare early jumps cost ~ log(1/t)), so the check is on the data average."""
    model, oracle = build("sedd_uniform", dtype=torch.float64, noise_eps=0.0)
    x = oracle.sample(4096, generator=torch.Generator().manual_seed(2))
    nelbo = model.negative_elbo(x, num_samples=8, generator=torch.Generator().manual_seed(3), t_min=0.0).double()
    mean, stderr = nelbo.mean(), nelbo.std() / math.sqrt(len(nelbo))
    entropy = oracle.entropy()
    assert mean >= entropy - 4 * stderr, (mean, entropy, stderr)
    assert mean <= entropy + 4 * stderr, (mean, entropy, stderr)


# --- one sampler step with the exact model is the exact per-position reverse marginal ---------
def exact_reverse_marginal(oracle, x_t, sigma_t, sigma_s):
    """p(x_s^i = y | x_t) [B, L, V] by enumeration: sum over x0 of p(x0) prod_{j != i} q_t(x_t^j | x0^j)
    q_s(y | x0^i) q_{t|s}(x_t^i | y) / p_t(x_t); the noise from s to t is the kernel at sigma_t - sigma_s."""
    b = len(x_t)
    k_t = oracle.kernel(torch.full((b,), sigma_t, dtype=torch.float64))  # [B, K, L, V]
    k_s = oracle.kernel(torch.full((b,), sigma_s, dtype=torch.float64))
    # q_{t|s}(x | y) [y, x]: the forward kernel of the increment sigma_t - sigma_s, from any state y
    v, keep = oracle.vocab_size, math.exp(-(sigma_t - sigma_s))
    full = keep * torch.eye(v, dtype=torch.float64)
    if oracle.graph == "absorbing":
        full[:, oracle.mask_token_id] += 1 - keep  # the mask itself stays: keep + (1 - keep) = 1
    else:
        full += (1 - keep) / v
    lik = k_t.gather(-1, x_t[:, None, :, None].expand(-1, k_t.shape[1], -1, 1)).squeeze(-1)  # [B, K, L]
    p_t = (oracle.probs * lik.prod(-1)).sum(-1)
    out = []
    for i in range(oracle.length):
        others = torch.cat([lik[:, :, :i], lik[:, :, i + 1 :]], -1).prod(-1)  # [B, K]
        forward = full[:, x_t[:, i]].T  # [B, V]: q_{t|s}(x_t^i | y)
        joint = torch.einsum("bk,bky->by", oracle.probs * others, k_s[:, :, i]) * forward
        out.append(joint / p_t[:, None])
    return torch.stack(out, 1)


@pytest.mark.parametrize(
    "name,sampler",
    [
        ("sedd_absorb", "analytic"),
        ("sedd_uniform", "analytic"),
        # first order in general, but for the absorbing graph under the log-linear schedule the
        # Euler weights (s/t to stay masked, p(y) (t - s)/t to unmask) are the exact ones
        ("sedd_absorb", "euler"),
        ("mdlm", "ancestral"),
    ],
)
def test_one_step_with_the_exact_model_is_the_exact_reverse_marginal(name, sampler):
    from hf_ddlm.samplers import get_sampler

    model, oracle = build(name, dtype=torch.float64)
    states = torch.tensor(list(itertools.product(range(oracle.vocab_size), repeat=LENGTH)))
    step = get_sampler(sampler, model.graph, model.schedule)
    for t, s in [(0.625, 0.375), (0.875, 0.8125), (0.125, 0.0625)]:  # exact in float32
        tt = torch.full((len(states),), t, dtype=torch.float64)
        ss = torch.full((len(states),), s, dtype=torch.float64)
        with torch.no_grad():
            output = model(input_ids=states, timesteps=tt).logits
        out = step.step(output, states, tt, ss)
        probs = out.probs / out.probs.sum(-1, keepdim=True)
        sigma_t, sigma_s = (float(model.schedule.total_noise(torch.tensor(v, dtype=torch.float64))) for v in (t, s))
        expected = exact_reverse_marginal(oracle, states, sigma_t, sigma_s)
        rows = torch.ones_like(states, dtype=torch.bool)
        if sampler == "ancestral":  # its weights cover masked positions; the rest is carried over
            rows = states == oracle.mask_token_id
            assert torch.equal(out.prev_sample[~rows], states[~rows])
        torch.testing.assert_close(probs[rows], expected[rows], rtol=1e-5, atol=1e-7)


# --- sampling with the exact model reaches p_data ---------------------------------------------
NUM_SAMPLES = 8000


@pytest.mark.parametrize(
    "name,sampler",
    [
        ("sedd_absorb", "analytic"),
        ("sedd_absorb", "euler"),
        ("mdlm", "ancestral"),
        ("sedd_uniform", "analytic"),
        ("sedd_uniform", "euler"),
    ],
)
def test_sampling_with_the_exact_model_converges_to_p_data(name, sampler):
    model, oracle = build(name)
    # the TV of NUM_SAMPLES exact draws from p_data: the floor an exact sampler sits on
    exact_draws = [oracle.sample(NUM_SAMPLES, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    floor = np.mean([oracle.total_variation(x) for x in exact_draws])
    tv = {}
    for steps in (2, 8, 32):
        x = model.generate(
            max_length=LENGTH,
            num_return_sequences=NUM_SAMPLES,
            sampler=sampler,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(steps),
        )
        assert x.shape == (NUM_SAMPLES, LENGTH)
        if oracle.graph == "absorbing":
            assert (x != oracle.mask_token_id).all()
        tv[steps] = oracle.total_variation(x)
    # 2 steps move most positions in the same step, independently: far from p_data; the error
    # shrinks with the chance that two positions move in one step
    assert tv[2] > tv[8] > tv[32], tv
    assert tv[2] > floor + 0.1, (tv, floor)
    assert tv[32] < floor + 0.03, (tv, floor)
