"""The continuous-time framework (tau-LDR): closed forms against matrix_exp and the generic formula,
the CT-ELBO and the samplers with the exact denoiser by enumeration, and the model through the HF API."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from transformers import AutoModel, Trainer, TrainingArguments

from hf_ddlm import CTMCConfig, CTMCForDiffusionLM
from hf_ddlm.objectives.ctmc import ctmc_exact_elbo, ctmc_one_pass_loss, forward_jump
from hf_ddlm.processes import NoiseLevel, get_graph, get_schedule
from hf_ddlm.processes.discrete_time import log_stationary
from hf_ddlm.samplers import CTMCEulerSampler, PredictorCorrectorSampler, TauLeapingSampler
from hf_ddlm.samplers.tau_leaping import RateTerms, categorical_leap, reverse_rates
from hf_ddlm.testing import ExactOracle, all_states, kernel_from_probs, state_index, tiny_config, tv_distance

F64 = torch.float64
SCHEDULES = {"uniform": ("geometric", {}), "absorbing": ("loglinear", {"eps": 0.0})}


def config(graph="uniform", V=4, length=4, **kw):
    return tiny_config(CTMCConfig, vocab_size=V, graph=graph, max_position_embeddings=length, **kw)


def dense_rate(graph):
    """R[x, y]: the unit forward rate from x to y (rows sum to 0): uniform 11^T/S - I, absorbing 1 e_m^T - I."""
    v = graph.vocab_size
    if graph.absorbing:
        r = -torch.eye(v, dtype=F64)
        r[:, graph.mask_token_id] += 1
        return r
    return torch.full((v, v), 1 / v, dtype=F64) - torch.eye(v, dtype=F64)


def lik(graph, sigma):
    """q_t(x_t = b | x0 = a) = alpha I + (1 - alpha) 1 pi^T as [V, V] (or [B, V, V] for sigma [B])."""
    v = graph.vocab_size
    pi = log_stationary(graph, F64).exp()
    alpha = torch.exp(-torch.as_tensor(sigma, dtype=F64))[..., None, None]
    return alpha * torch.eye(v, dtype=F64) + (1 - alpha) * pi.expand(v, v)


class FixedNoise:
    """A schedule with sigma(t) = sigma and dsigma = 1 at every t (so rates are per unit of sigma)."""

    def __init__(self, sigma):
        self.sigma = sigma

    def __call__(self, t):
        return NoiseLevel(sigma=torch.full(t.shape, self.sigma, dtype=F64), dsigma=torch.ones(t.shape, dtype=F64))


# ------------------------------------------------------------------------------------------------
# C1, C9: transition probabilities and reverse rates in closed form


@pytest.mark.parametrize("graph_name", ["uniform", "absorbing"])
def test_transitions_equal_matrix_exp_and_rates_equal_the_generic_formula(graph_name):
    v = 6
    graph = get_graph(graph_name, v)
    r = dense_rate(graph)
    assert torch.allclose(r.sum(1), torch.zeros(v, dtype=F64)) and (r - torch.diag(r.diag()) >= 0).all()
    x = torch.arange(v)
    torch.testing.assert_close(graph.transp_rate(x[None]).double()[0], r)
    g = torch.Generator().manual_seed(0)
    for sigma in (1e-3, 0.3, 2.0):
        p = torch.linalg.matrix_exp(sigma * r)
        torch.testing.assert_close(p, lik(graph, sigma), atol=1e-13, rtol=0)
        torch.testing.assert_close(
            p @ torch.linalg.matrix_exp(0.7 * r), torch.linalg.matrix_exp((sigma + 0.7) * r), atol=1e-12, rtol=0
        )
        # graphs.transp_transition(x)[y] = q(x_t = x | x0 = y)
        torch.testing.assert_close(
            graph.transp_transition(x, torch.full((v,), sigma, dtype=F64)), p.T, atol=1e-13, rtol=0
        )
        # R-hat(x -> y) = R(y, x) sum_x0 p(x0) P(x0, y) / P(x0, x), for random p(x0 | x)
        logits = torch.randn(v, v, generator=g, dtype=F64)
        if graph.absorbing:
            logits[:, graph.mask_token_id] = -1e6
        p0 = logits.softmax(-1)  # row x: p(x0 | x)
        generic = torch.zeros(v, v, dtype=F64)
        for a in range(v):
            for b in range(v):
                if a == b or r[b, a] == 0:
                    continue
                generic[a, b] = r[b, a] * sum(p0[a, c] * p[c, b] / p[c, a] for c in range(v) if p[c, a] > 0)
        closed = reverse_rates(graph, FixedNoise(sigma), p0.log()[:, None, :], x[:, None], torch.zeros(v))[
            :, 0
        ].double()
        torch.testing.assert_close(closed, generic, rtol=1e-5, atol=1e-9)


def test_rates_stay_finite_at_gpt2_vocabulary_in_fp32():
    v = 50257
    graph = get_graph("uniform", v)
    sched = get_schedule("geometric", sigma_min=1e-4, sigma_max=20.0)
    g = torch.Generator().manual_seed(0)
    log_p0 = torch.log_softmax(torch.randn(2, 3, v, generator=g), -1)
    x = torch.randint(0, v, (2, 3), generator=g)
    rates = reverse_rates(graph, sched, log_p0, x, torch.zeros(2))  # t = 0: sigma = 1e-4
    assert torch.isfinite(rates).all() and (rates >= 0).all()
    # sum_y R-hat = dsigma/N [(N - 1)(1 - p_x + p_x E/(N + E)) + (1 - p_x) N/E] ~ dsigma / sigma for small sigma
    level = sched(torch.zeros(1))
    p_x = torch.gather(log_p0.exp(), -1, x[..., None])[..., 0].double()
    e = math.expm1(1e-4)
    expected = float(level.dsigma) / v * ((v - 1) * (1 - p_x + p_x * e / (v + e)) + (1 - p_x) * v / e)
    torch.testing.assert_close(rates.double().sum(-1), expected, rtol=2e-3, atol=0)


# ------------------------------------------------------------------------------------------------
# C3, C4: the reverse rates with the exact denoiser are the time reversal; q_t is stationary for R + R-hat


def joint_generator(states, rates):
    """The generator [N, N] on the joint space of per-position rates [N, L, V] (one token moves at a time)."""
    n, length, v = rates.shape
    gen = torch.zeros(n, n, dtype=F64)
    for d in range(length):
        for tok in range(v):
            y = states.clone()
            y[:, d] = tok
            moved = states[:, d] != tok
            gen[torch.arange(n)[moved], state_index(y[moved], v)] += rates[moved, d, tok].double()
    return gen - torch.diag(gen.sum(1))


@pytest.mark.parametrize("graph_name", ["uniform", "absorbing"])
def test_exact_denoiser_gives_the_time_reversal_and_corrector_stationarity(graph_name):
    v = 4
    graph = get_graph(graph_name, v)
    data = ExactOracle.random_table(3 if graph.absorbing else 4, 2, vocab_size=v, seed=3)
    states = all_states(v, 2)
    sched = get_schedule(SCHEDULES[graph_name][0], **SCHEDULES[graph_name][1])
    t = torch.full((len(states),), 0.4, dtype=F64)
    level = sched(t)
    q_t = (
        data.p[:, None]
        * torch.stack([lik(graph, level.sigma[0])[data.states[:, d]][:, states[:, d]] for d in range(2)]).prod(0)
    ).sum(0)
    rates = reverse_rates(
        graph, sched, data.posterior_log_probs(states, lik(graph, level.sigma[0])), states, t
    ).double()
    forward = torch.stack([graph.transp_rate(states[:, d]).double() for d in range(2)], 1) * level.dsigma[0]
    fwd_gen = joint_generator(states, forward.scatter(-1, states.unsqueeze(-1), 0.0))
    rev_gen = joint_generator(states, rates)
    # R-hat(x, y) = R(y, x) q_t(y) / q_t(x) wherever q_t(x) > 0
    live = q_t > 1e-12
    off = ~torch.eye(len(states), dtype=torch.bool)
    expected = fwd_gen.T * q_t[None, :] / q_t[:, None].clamp_min(1e-300)
    torch.testing.assert_close(
        rev_gen[live][:, live][off[live][:, live]], expected[live][:, live][off[live][:, live]], rtol=1e-5, atol=1e-9
    )
    assert (q_t @ (fwd_gen + rev_gen)).abs().max() < 1e-6


# ------------------------------------------------------------------------------------------------
# C6: the CT-ELBO with the exact denoiser equals the NLL


def exact_ct_elbo(data: ExactOracle, graph_name, t_min=1e-3, points=200):
    graph = get_graph(graph_name, data.vocab_size)
    sched = get_schedule(SCHEDULES[graph_name][0], **SCHEDULES[graph_name][1])
    xts = all_states(data.vocab_size, data.length)
    n0, nt = len(data.states), len(xts)
    X0, XT = data.states.repeat_interleave(nt, 0), xts.repeat(n0, 1)

    def weights(sigma):
        lk = lik(graph, sigma)
        return lk, data.p.repeat_interleave(nt) * torch.stack(
            [lk[X0[:, d], XT[:, d]] for d in range(data.length)]
        ).prod(0)

    # the integral over t in [t_min, 1] with log-spaced nodes (the integrand grows like 1/t), trapezoid
    u = torch.linspace(math.log(t_min), math.log1p(-1e-7), points, dtype=F64)  # sigma(1) may be infinite
    ts = u.exp()
    vals = []
    for t in ts:
        level = sched(t[None].expand(len(X0)))
        lk, w = weights(level.sigma[0])
        keep = w > 0
        log_p0 = data.posterior_log_probs(xts, lk).repeat(n0, 1, 1)[keep]
        lv = type(level)(sigma=level.sigma[keep], dsigma=level.dsigma[keep])
        vals.append(float((w[keep] * ctmc_exact_elbo(log_p0, X0[keep], XT[keep], lv, graph).sum(-1)).sum()))
    vals = torch.tensor(vals, dtype=F64) * ts  # dt = t du
    integral = float(((vals[1:] + vals[:-1]) / 2 * (u[1:] - u[:-1])).sum())
    lk, w = weights(sched(torch.tensor([t_min], dtype=F64)).sigma[0])
    keep = w > 0
    log_p0 = data.posterior_log_probs(xts, lk).repeat(n0, 1, 1)[keep]
    recon = float((w[keep] * -torch.gather(log_p0, -1, X0[keep].unsqueeze(-1))[..., 0].sum(-1)).sum())
    prior = 0.0  # absorbing: q_1 is all-mask (eps = 0)
    # uniform prior: KL(q_1(. | x0) || uniform) summed over positions; q_1 is uniform to e^-20
    if not graph.absorbing:
        a = math.exp(-float(sched(torch.ones(1, dtype=F64)).sigma))
        c = a + (1 - a) / data.vocab_size
        prior = data.length * (c * math.log(c * data.vocab_size) + (1 - c) * math.log(1 - a))
    return integral + recon + prior


@pytest.mark.parametrize("graph_name", ["uniform", "absorbing"])
def test_ct_elbo_with_the_exact_denoiser_equals_the_nll(graph_name):
    data = ExactOracle.random_table(3, 2, vocab_size=4 if graph_name == "absorbing" else 3, seed=0)
    elbo = exact_ct_elbo(data, graph_name)
    assert elbo == pytest.approx(data.nll, abs=2e-3), (elbo, data.nll)


class OracleCTMC(CTMCForDiffusionLM):
    """A CTMC model whose output is the true p(x0^d | x_t) of a fixed enumerable p_data."""

    data: ExactOracle = None

    def parameterize(self, logits, x_t, level):
        return self.data.posterior_log_probs(x_t, lik(self.graph, level.sigma.double())).float()


@pytest.mark.parametrize("graph_name", ["uniform", "absorbing"])
def test_likelihood_api_with_the_exact_denoiser(graph_name):
    v = 4 if graph_name == "absorbing" else 3
    data = ExactOracle.random_table(3, 2, vocab_size=v, seed=0)
    torch.manual_seed(0)
    model = OracleCTMC(config(graph_name, V=v, length=2)).eval()
    model.data = data
    reps = 40
    nelbo = model.negative_elbo(data.states.repeat(reps, 1), num_samples=8, generator=torch.Generator().manual_seed(0))
    w = data.p.repeat(reps) / reps
    est = float((w * nelbo.double()).sum())
    stderr = float(((w * reps) * (nelbo.double() - est) ** 2).sum().sqrt() / math.sqrt(reps * len(data.states)))
    assert abs(est - data.nll) < 4 * stderr + 5e-3, (est, data.nll, stderr)


# ------------------------------------------------------------------------------------------------
# C7: tau-leaping's error falls with the step size; predictor-corrector does not make it worse


def sampler_law(data, graph_name, sampler, steps, t_min=1e-3):
    """The law of the sampler's output with the exact denoiser, propagated exactly over the joint space."""
    graph = get_graph(graph_name, data.vocab_size)
    sched = sampler.schedule
    xts = all_states(data.vocab_size, data.length)
    if graph.absorbing:
        mu = (xts == graph.mask_token_id).all(-1).double()
    else:
        mu = torch.full((len(xts),), 1 / len(xts), dtype=F64)
    ts = sampler.set_timesteps(steps, t_min)
    n = len(xts)
    for i in range(steps):
        sig = sched(ts[i][None].double()).sigma[0]
        log_p0 = data.posterior_log_probs(xts, lik(graph, sig)).float()
        out = sampler.step(log_p0, xts, ts[i].expand(n), ts[i + 1].expand(n))
        mu = mu @ kernel_from_probs(out.probs, xts)
    sig = sched(ts[-1][None].double()).sigma[0]
    out = sampler.denoise(data.posterior_log_probs(xts, lik(graph, sig)).float(), xts, ts[-1].expand(n))
    return mu @ kernel_from_probs(out.probs, xts)


@pytest.mark.parametrize("graph_name", ["uniform", "absorbing"])
def test_tau_leaping_error_shrinks_with_the_step_and_pc_does_not_hurt(graph_name):
    v = 4 if graph_name == "absorbing" else 3
    data = ExactOracle.random_table(3, 2, vocab_size=v, seed=0)
    graph = get_graph(graph_name, v)
    sched = get_schedule(SCHEDULES[graph_name][0], **SCHEDULES[graph_name][1])
    target = data.prob_of(all_states(v, 2))
    tv = {}
    for cls in (TauLeapingSampler, CTMCEulerSampler):
        tv[cls.name] = {
            n: tv_distance(
                sampler_law(data, graph_name, cls(graph, sched, final_step="sample", return_probs=True), n), target
            )
            for n in (4, 8, 16, 32)
        }
        for n in (8, 16, 32):
            assert 1.4 < tv[cls.name][n // 2] / tv[cls.name][n] < 2.8, (cls.name, tv)
    for n in (8, 16):
        pc = PredictorCorrectorSampler(
            graph, sched, num_corrector_steps=1, corrector_step_multiplier=0.5, final_step="sample", return_probs=True
        )
        tv_pc = tv_distance(sampler_law(data, graph_name, pc, 2 * n), target)  # n predictor + n corrector entries
        assert pc.predictor_step == pytest.approx((1 - 1e-3) / n)
        assert tv_pc <= tv["tau_leaping"][n] + 1e-3, (n, tv_pc, tv["tau_leaping"][n])


def test_pc_grid_counts_network_calls():
    graph, sched = get_graph("uniform", 5), get_schedule("geometric")
    pc = PredictorCorrectorSampler(graph, sched, num_corrector_steps=2, corrector_entry_time=0.5)
    ts = pc.set_timesteps(20, 0.01)
    assert len(ts) == 21 and ts[0] == 1 and ts[-1] == pytest.approx(0.01)
    repeats = (ts[1:] == ts[:-1]).nonzero()[:, 0]
    assert all(ts[i] <= 0.5 for i in repeats)  # correctors only after the entry time
    assert PredictorCorrectorSampler(graph, sched, num_corrector_steps=0).set_timesteps(7, 0.01).unique().numel() == 8


# ------------------------------------------------------------------------------------------------
# C8: the categorical jump rule


def test_multiple_jumps_are_rejected_not_summed():
    # h Lambda = 2: a Poisson count is 1 with probability 2 e^-2 = 0.27; moving on any jump (the
    # outcome of tau-LDR's ConditionalTauLeaping, which recomputes the displacement after its
    # rejection) would give 1 - e^-2 = 0.86
    n, v = 20000, 6
    graph = get_graph("uniform", v)
    log_p0 = torch.log(torch.tensor([0.0, 0.0, 0.25, 0.25, 0.25, 0.25]).clamp_min(1e-38)).expand(n, 1, v)
    hazards = RateTerms(torch.zeros(n, 1), torch.full((n, 1), 2.0), "uniform")  # H(y) = 2 p~(y): total 2 on tokens 2..5
    x = torch.zeros(n, 1, dtype=torch.long)
    out = categorical_leap(
        hazards, graph, log_p0, x, "poisson", False, torch.Generator().manual_seed(0), return_probs=True
    )
    moved = (out.prev_sample != 0).double().mean()
    assert moved == pytest.approx(2 * math.exp(-2), abs=0.015)
    assert ((out.prev_sample == 0) | (out.prev_sample >= 2)).all()  # only single-jump targets
    torch.testing.assert_close(out.probs[0, 0], torch.tensor([1 - 2 * math.exp(-2), 0, *[0.5 * math.exp(-2)] * 4]))
    first = categorical_leap(hazards, graph, log_p0, x, "poisson", True, torch.Generator().manual_seed(0))
    assert (first.prev_sample != 0).double().mean() == pytest.approx(1 - math.exp(-2), abs=0.015)


@pytest.mark.parametrize("graph_name", ["uniform", "absorbing"])
@pytest.mark.parametrize("sampler_name", ["tau_leaping", "ctmc_euler", "corrector"])
def test_sampler_draws_follow_their_probabilities(graph_name, sampler_name):
    # the samplers draw one Poisson count per position and a categorical only where a token jumps;
    # their draws must follow the full per-position transition probabilities (return_probs)
    v, n = 5, 30000
    graph = get_graph(graph_name, v)
    sched = get_schedule(SCHEDULES[graph_name][0], **SCHEDULES[graph_name][1])
    if sampler_name == "corrector":
        sampler = PredictorCorrectorSampler(
            graph, sched, num_corrector_steps=1, corrector_step_multiplier=3.0, return_probs=True
        )
        sampler.set_timesteps(4, 0.01)
        t = s = torch.full((n,), 0.3)
    else:
        sampler = (TauLeapingSampler if sampler_name == "tau_leaping" else CTMCEulerSampler)(
            graph, sched, return_probs=True
        )
        t, s = torch.full((n,), 0.3), torch.full((n,), 0.2 if graph.absorbing else 0.25)
    logits = torch.tensor([0.3, -1.0, 2.0, 0.0, 0.5])
    if graph.absorbing:
        logits[-1] = -1e6
    log_p0 = torch.log_softmax(logits, -1).expand(n, 2, v)
    x = torch.tensor([[1, v - 1]]).expand(n, 2)  # an ordinary token and (absorbing) the mask
    out = sampler.step(log_p0, x, t, s, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.probs.sum(-1), torch.ones(n, 2))
    for d in range(2):
        freq = torch.bincount(out.prev_sample[:, d], minlength=v).double() / n
        p = out.probs[0, d].double()
        assert (freq - p).abs().max() < 4 * (p * (1 - p) / n).sqrt().max() + 1e-3, (d, freq, p)


def test_forward_jump_follows_the_forward_rates():
    graph = get_graph("uniform", 3)
    n = 30000
    x = torch.tensor([[0, 1]]).expand(n, 2)
    y = forward_jump(x, torch.ones(n, 2, dtype=torch.bool), graph, torch.Generator().manual_seed(0))
    changed = (y != x).sum(-1)
    assert (changed == 1).all()
    freq = torch.bincount(state_index(y, 3), minlength=9).double() / n
    expected = torch.zeros(9, dtype=F64)
    for idx in (0, 2, 4, 7):  # (0,0), (0,2), (1,1), (2,1): each with probability 1/4
        expected[idx] = 0.25
    assert (freq - expected).abs().max() < 0.015


# ------------------------------------------------------------------------------------------------
# C5: the one-pass estimator's Rao-Blackwellised signal term


def test_one_pass_signal_has_the_expectation_of_the_direct_signal():
    v, length = 3, 2
    graph = get_graph("uniform", v)
    sched = get_schedule("geometric")
    states = all_states(v, length)
    n = len(states)
    g = torch.Generator().manual_seed(0)
    table = torch.log_softmax(torch.randn(n, length, v, generator=g, dtype=F64), -1)  # an arbitrary p~ per state
    x0 = torch.tensor([0, 2])
    t = torch.tensor([0.5], dtype=F64)
    level = sched(t.expand(n))
    lk = lik(graph, level.sigma[0])
    q = torch.stack([lk[x0[d], states[:, d]] for d in range(length)]).prod(0)  # q_t(x | x0)
    # psi(x~) = sum_x q(x) r(x~ | x); the uniform exit rate is the same for every x
    psi = (
        q
        @ (
            joint_generator(
                states, torch.full((n, length, v), 1.0 / v, dtype=F64).scatter(-1, states.unsqueeze(-1), 0.0)
            )
            + torch.eye(n, dtype=F64) * length * (v - 1) / v
        )
        / (length * (v - 1) / v)
    )
    mask = torch.ones(n, length, dtype=torch.bool)
    one_pass = ctmc_one_pass_loss(table, x0.expand(n, length), states, level, graph, mask).sum(-1)
    rates_theta = reverse_rates(graph, sched, table, states, t.expand(n)).double()
    reg = rates_theta.sum((-1, -2))
    lhs = float((psi * (one_pass - reg)).sum())  # -E_psi[signal]
    # direct: E_{x ~ q} sum_y R-hat_{|0}(x, y) log R-hat_theta(x, y)
    cond = torch.zeros(n, length, v, dtype=F64)
    for d in range(length):
        cond[:, d] = level.dsigma[0] / v * lk[x0[d]][None, :] / lk[x0[d], states[:, d]][:, None]
    cond = cond.scatter(-1, states.unsqueeze(-1), 0.0)
    rhs = -float((q * (cond * torch.where(cond > 0, rates_theta.clamp_min(1e-300).log(), 0.0)).sum((-1, -2))).sum())
    assert lhs == pytest.approx(rhs, rel=1e-5)  # reverse_rates runs in fp32


# ------------------------------------------------------------------------------------------------
# the model through the HF API


def toy_dataset(v, length, rows=16):
    g = torch.Generator().manual_seed(0)
    patterns = torch.randint(0, v - 1, (3, length), generator=g)
    ids = patterns[torch.arange(rows) % 3].tolist()
    return Dataset.from_dict({"input_ids": ids, "labels": ids})


@pytest.mark.parametrize("graph_name,estimator", [("uniform", "one_pass"), ("absorbing", "exact")])
def test_trainer_save_load_and_generate(tmp_path, graph_name, estimator):
    torch.manual_seed(0)
    cfg = config(graph_name, V=12, length=8, ctmc_estimator=estimator)
    model = CTMCForDiffusionLM(cfg)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=8,
        learning_rate=3e-3,
        max_steps=3,
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=toy_dataset(12, 8), eval_dataset=toy_dataset(12, 8, rows=4))
    trainer.train()
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)
    assert math.isfinite(trainer.evaluate()["eval_loss"])
    model.save_pretrained(tmp_path / "ckpt")
    loaded = AutoModel.from_pretrained(tmp_path / "ckpt").eval()
    assert isinstance(loaded, CTMCForDiffusionLM) and loaded.config.ctmc_estimator == estimator
    x = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(
        loaded(input_ids=x, timesteps=0.3).logits, model.eval()(input_ids=x, timesteps=0.3).logits
    )
    prompt = torch.tensor([[1, 2, 3]])
    infill = torch.zeros(1, 8, dtype=torch.bool)
    infill[0, 2:5] = True
    ids = torch.tensor([[1, 2, 0, 0, 0, 6, 7, 8]])
    for sampler, kw in (("tau_leaping", {}), ("ctmc_euler", {}), ("predictor_corrector", {"num_corrector_steps": 1})):
        out = loaded.generate(
            input_ids=prompt, max_new_tokens=5, num_inference_steps=6, sampler=sampler, sampler_kwargs=kw, seed=0
        )
        assert out.shape == (1, 8) and torch.equal(out[:, :3], prompt)
        out = loaded.generate(
            input_ids=ids, infill_mask=infill, num_inference_steps=6, sampler=sampler, sampler_kwargs=kw, seed=1
        )
        assert torch.equal(out[~infill], ids[~infill])
        if graph_name == "absorbing":
            assert (out != cfg.mask_token_id).all()


def test_bad_input():
    with pytest.raises(ValueError, match="graph"):
        config("birth_death")
    with pytest.raises(ValueError, match="ctmc_estimator"):
        config(ctmc_estimator="two_pass")
    graph, sched = get_graph("uniform", 5), get_schedule("geometric")
    with pytest.raises(ValueError, match="num_corrector_steps"):
        PredictorCorrectorSampler(graph, sched, num_corrector_steps=-1)
    with pytest.raises(ValueError, match="corrector_step_multiplier"):
        PredictorCorrectorSampler(graph, sched, corrector_step_multiplier=0.0)
    with pytest.raises(ValueError, match="final_step"):
        TauLeapingSampler(graph, sched, final_step="mode")
    model = CTMCForDiffusionLM(config(V=6))
    with pytest.raises(ValueError, match="num_corrector_steps"):
        model.generate(max_length=4, sampler="predictor_corrector", sampler_kwargs={"num_corrector_steps": -2})
    with pytest.raises(ValueError, match="t_min"):
        model.negative_elbo(torch.randint(0, 6, (2, 4)), t_min=0.0)


def test_uniform_closed_form_integrand_equals_score_entropy_form():
    from hf_ddlm.objectives.ctmc import uniform_ct_elbo
    from hf_ddlm.objectives.score_entropy import denoising_score_entropy

    v = 7
    graph = get_graph("uniform", v)
    sched = get_schedule("geometric")
    g = torch.Generator().manual_seed(0)
    log_p0 = torch.log_softmax(torch.randn(6, 5, v, generator=g, dtype=F64) * 2, -1)
    x0 = torch.randint(0, v, (6, 5), generator=g)
    x_t = torch.where(torch.rand(6, 5, generator=g) < 0.5, x0, torch.randint(0, v, (6, 5), generator=g))
    level = sched(torch.tensor([0.01, 0.1, 0.3, 0.5, 0.8, 1.0], dtype=F64))
    reference = denoising_score_entropy(graph.log_ratio_from_x0(log_p0, x_t, level.sigma), x0, x_t, level, graph)
    torch.testing.assert_close(uniform_ct_elbo(log_p0, x0, x_t, level, v), reference, rtol=1e-9, atol=1e-9)
    assert (reference > -1e-9).all()
    # and so are their gradients with respect to the logits (the closed form uses sum_y p_y = 1, so
    # only gradients along the simplex, through the log-softmax, agree), through the custom backward
    logits = (log_p0.detach() + 0.3).requires_grad_()
    (g_closed,) = torch.autograd.grad(uniform_ct_elbo(logits.log_softmax(-1), x0, x_t, level, v).sum(), logits)
    log_p = logits.log_softmax(-1)
    reference = denoising_score_entropy(graph.log_ratio_from_x0(log_p, x_t, level.sigma), x0, x_t, level, graph)
    (g_reference,) = torch.autograd.grad(reference.sum(), logits)
    torch.testing.assert_close(g_closed, g_reference, rtol=1e-8, atol=1e-9)
