"""D3PM: closed forms against dense matrices, exact bounds and sampling by enumeration, and the
model through the HF API (Trainer, save/load, Auto classes, generate, likelihood)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import AutoModel, AutoModelForMaskedLM, Trainer, TrainingArguments

from hf_ddlm import D3PMConfig, D3PMForDiffusionLM
from hf_ddlm.objectives.d3pm import d3pm_vb_term
from hf_ddlm.processes import get_graph
from hf_ddlm.processes.discrete_time import (
    DiscreteTimeSchedule,
    d3pm_reverse_log_probs,
    log_stationary,
    log_transition_to,
    marginal_log_probs,
    posterior_log_probs,
    prior_kl,
)
from hf_ddlm.samplers import D3PMAncestralSampler
from hf_ddlm.testing import ExactOracle, all_states, kernel_from_probs, tiny_config, tv_distance

F64 = torch.float64


def config(graph="absorbing", T=8, V=4, length=4, **kw):
    return tiny_config(D3PMConfig, vocab_size=V, graph=graph, num_timesteps=T, max_position_embeddings=length, **kw)


def dense_step(schedule, graph, k):
    """Q_k = (1 - beta_k) I + beta_k 1 pi^T as a dense [V, V] float64 matrix (row-stochastic)."""
    v = graph.vocab_size
    pi = log_stationary(graph, F64).exp()
    beta = schedule.betas[k]
    return (1 - beta) * torch.eye(v, dtype=F64) + beta * pi[None].expand(v, v)


def dense_product(schedule, graph, j, k):
    """Q_{j+1} ... Q_k (identity when j = k)."""
    out = torch.eye(graph.vocab_size, dtype=F64)
    for i in range(j + 1, k + 1):
        out = out @ dense_step(schedule, graph, i)
    return out


def lik(schedule, graph, k):
    """q(x_k = b | x0 = a) as [V, V] (float64), from the closed form alpha_bar_k I + (1 - alpha_bar_k) 1 pi^T."""
    v = graph.vocab_size
    pi = log_stationary(graph, F64).exp()
    return schedule.alpha_bar[k] * torch.eye(v, dtype=F64) + schedule.one_minus_alpha_bar[k] * pi[None].expand(v, v)


def coef(schedule, k_t, k_s, n):
    return schedule.coefficients(torch.full((n,), k_t), torch.full((n,), k_s), dtype=F64)


# ------------------------------------------------------------------------------------------------
# D1-D5: the closed forms


@pytest.mark.parametrize("graph_name", ["absorbing", "uniform"])
def test_closed_form_kernels_equal_dense_chain_products(graph_name):
    v, T = (5, 7) if graph_name == "absorbing" else (4, 7)
    graph = get_graph(graph_name, v)
    cfg = config(graph_name, T=T, V=v)
    schedule = cfg.discrete_schedule()
    log_pi = log_stationary(graph, F64)
    x0 = torch.arange(v)[None]  # one row of every token
    for k in range(T + 1):
        qbar = dense_product(schedule, graph, 0, k)
        assert (qbar >= 0).all() and torch.allclose(qbar.sum(1), torch.ones(v, dtype=F64))
        got = marginal_log_probs(x0, schedule.alpha_bar[k][None], schedule.one_minus_alpha_bar[k][None], log_pi).exp()[
            0
        ]
        torch.testing.assert_close(got, qbar, atol=1e-12, rtol=0)
        for j in range(k):  # the two-time kernel Q_{k|j}, column x_t = b for every b
            c = coef(schedule, k, j, 1)
            cols = torch.stack(
                [log_transition_to(torch.tensor([[b]]), c.keep, c.move, log_pi).exp()[0, 0] for b in range(v)], 1
            )
            torch.testing.assert_close(cols, dense_product(schedule, graph, j, k), atol=1e-12, rtol=0)


def test_constant_beta_gives_matrix_power():
    graph = get_graph("uniform", 4)
    schedule = DiscreteTimeSchedule(6, betas=[0.3] * 6)
    q1 = dense_step(schedule, graph, 1)
    got = marginal_log_probs(
        torch.arange(4)[None],
        schedule.alpha_bar[6][None],
        schedule.one_minus_alpha_bar[6][None],
        log_stationary(graph, F64),
    ).exp()[0]
    torch.testing.assert_close(got, torch.linalg.matrix_power(q1, 6), atol=1e-12, rtol=0)


def test_paper_schedules_and_prior_term():
    # absorbing "jsd": beta_k = 1/(T - k + 1), alpha_bar_k = 1 - k/T, q(x_T | x0) all-mask: prior KL = 0
    T = 1000
    s = config("absorbing", T=T, V=50258).discrete_schedule()
    k = torch.arange(1, T + 1, dtype=F64)
    torch.testing.assert_close(s.betas[1:], 1 / (T - k + 1), rtol=1e-12, atol=0)
    torch.testing.assert_close(s.alpha_bar[1:], 1 - k / T, rtol=0, atol=1e-12)
    x0 = torch.tensor([[3, 7]])
    graph = get_graph("absorbing", 50258)
    assert prior_kl(x0, s.alpha_bar[T][None], s.one_minus_alpha_bar[T][None], graph).abs().max() == 0
    # uniform, cosine (beta clipped at 0.999): the prior KL is tiny but not 0
    s = config("uniform", T=T, V=50258).discrete_schedule()
    assert s.betas[1:].max() <= 0.999 and s.betas[T] == pytest.approx(0.999)
    kl = prior_kl(x0, s.alpha_bar[T][None], s.one_minus_alpha_bar[T][None], get_graph("uniform", 50258))
    assert (kl > 0).all() and (kl < 1e-5).all()


@pytest.mark.parametrize("graph_name", ["absorbing", "uniform"])
def test_posterior_is_bayes_rule_and_consistent(graph_name):
    v, T = 4, 6
    graph = get_graph(graph_name, v)
    schedule = config(graph_name, T=T, V=v).discrete_schedule()
    log_pi = log_stationary(graph, F64)
    data_vocab = v - 1 if graph.absorbing else v
    x0 = torch.arange(data_vocab).repeat_interleave(v)[:, None]
    x_t = torch.arange(v).repeat(data_vocab)[:, None]
    for k in range(1, T + 1):
        qk, qbar_prev, qbar = (
            dense_step(schedule, graph, k),
            dense_product(schedule, graph, 0, k - 1),
            dense_product(schedule, graph, 0, k),
        )
        post = posterior_log_probs(x0, x_t, coef(schedule, k, k - 1, len(x0)), log_pi).exp()[:, 0]
        for row, (a, b) in enumerate(zip(x0[:, 0].tolist(), x_t[:, 0].tolist())):
            if qbar[a, b] == 0:
                continue  # x_t impossible given x0
            brute = qk[:, b] * qbar_prev[a] / qbar[a, b]
            torch.testing.assert_close(post[row], brute, atol=1e-12, rtol=0)
            if k == 1:
                assert post[row, a] == pytest.approx(1.0)
        # sum_{x_t} q(x_{k-1} | x_t, x0) q(x_t | x0) = q(x_{k-1} | x0)
        for a in range(data_vocab):
            rows = (x0[:, 0] == a).nonzero()[:, 0]
            mix = sum(post[r] * qbar[a, x_t[r, 0]] for r in rows if qbar[a, x_t[r, 0]] > 0)
            torch.testing.assert_close(mix, qbar_prev[a], atol=1e-12, rtol=0)


@pytest.mark.parametrize("graph_name", ["absorbing", "uniform"])
def test_forward_sampling_matches_the_marginal(graph_name):
    torch.manual_seed(0)
    model = D3PMForDiffusionLM(config(graph_name, T=10, V=5))
    n, k = 40000, 4
    x0 = torch.full((n, 1), 2)
    x_t = model.graph.sample_xt(
        x0, model.schedule(torch.full((n,), k / 10)).sigma, generator=torch.Generator().manual_seed(1)
    )
    freq = torch.bincount(x_t[:, 0], minlength=5).double() / n
    expected = lik(model.schedule, model.graph, k)[2]
    assert (freq - expected).abs().max() < 4 * (expected * (1 - expected) / n).sqrt().max() + 1e-9


@pytest.mark.parametrize("graph_name", ["absorbing", "uniform"])
@pytest.mark.parametrize("form", ["paper", "mixture"])
def test_one_hot_prediction_gives_the_posterior_and_keeps_its_support(graph_name, form):
    v, T = 5, 6
    graph = get_graph(graph_name, v)
    schedule = config(graph_name, T=T, V=v).discrete_schedule()
    log_pi = log_stationary(graph, F64)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, v - 1, (64, 3), generator=g)
    for k in range(1, T + 1):
        c = coef(schedule, k, k - 1, 64)
        x_t = graph.sample_xt(x0, torch.full((64,), -schedule.log_alpha_bar[k].item()), generator=g)
        onehot = torch.full((64, 3, v), -1e6, dtype=F64).scatter(-1, x0.unsqueeze(-1), 0.0)
        assert d3pm_vb_term(onehot, x0, x_t, c, log_pi, form).abs().max() < 1e-9
        rand = torch.log_softmax(torch.randn(64, 3, v, generator=g, dtype=F64), -1)
        if graph.absorbing:
            rand[..., -1] = -1e6
        p = d3pm_reverse_log_probs(rand, x_t, c, log_pi, form).exp()
        # p_theta(x_{k-1} | x_t) is 0 wherever q(x_t | x_{k-1}) is 0
        reachable = log_transition_to(x_t, c.keep, c.move, log_pi).exp() > 0
        assert p[~reachable].abs().sum() < 1e-12
        torch.testing.assert_close(p.sum(-1), torch.ones(64, 3, dtype=F64))


# ------------------------------------------------------------------------------------------------
# D6: the bound and the sampler with the exact denoiser, by enumeration


def exact_nelbo(data: ExactOracle, cfg: D3PMConfig, form: str) -> float:
    """E_{p_data}[prior + sum_k L_k] with the true p(x0^d | x_k) plugged in (float64)."""
    graph, schedule, T = get_graph(cfg.graph, cfg.vocab_size), cfg.discrete_schedule(), cfg.num_timesteps
    log_pi = log_stationary(graph, F64)
    xts = all_states(cfg.vocab_size, data.length)
    n0, nt = len(data.states), len(xts)
    X0, XT = data.states.repeat_interleave(nt, 0), xts.repeat(n0, 1)
    prior = prior_kl(data.states, schedule.alpha_bar[T].expand(n0), schedule.one_minus_alpha_bar[T].expand(n0), graph)
    total = float((data.p * prior.double().sum(-1)).sum())
    for k in range(1, T + 1):
        lk = lik(schedule, graph, k)
        weight = data.p.repeat_interleave(nt) * torch.stack([lk[X0[:, d], XT[:, d]] for d in range(data.length)]).prod(
            0
        )
        keep = weight > 0
        log_x0 = data.posterior_log_probs(xts, lk).repeat(n0, 1, 1)[keep]
        vb = d3pm_vb_term(log_x0, X0[keep], XT[keep], coef(schedule, k, k - 1, int(keep.sum())), log_pi, form)
        total += float((weight[keep] * vb.sum(-1)).sum())
    return total


def exact_sample_distribution(data: ExactOracle, cfg: D3PMConfig, form: str, steps: int) -> torch.Tensor:
    """The law of the ancestral sampler's output (with the true denoiser), propagated exactly."""
    graph, schedule = get_graph(cfg.graph, cfg.vocab_size), cfg.discrete_schedule()
    sampler = D3PMAncestralSampler(graph, schedule, parameterization=form, return_probs=True)
    ts = sampler.set_timesteps(steps)
    xts = all_states(cfg.vocab_size, data.length)
    if graph.absorbing:
        mu = (xts == graph.mask_token_id).all(-1).double()
    else:
        mu = torch.full((len(xts),), 1 / len(xts), dtype=F64)
    for i in range(steps):
        k = int(round(float(ts[i]) * cfg.num_timesteps))
        log_x0 = data.posterior_log_probs(xts, lik(schedule, graph, k))
        out = sampler.step(log_x0.float(), xts, ts[i].expand(len(xts)), ts[i + 1].expand(len(xts)))
        mu = mu @ kernel_from_probs(out.probs, xts)
    return mu


def test_absorbing_gap_is_mutual_information_over_T():
    data = ExactOracle.random_table(3, 2, vocab_size=4, seed=0)
    mi = data.mutual_information()
    assert mi > 0.05
    for T in (1, 2, 4, 16):
        for form in ("paper", "mixture"):
            gap = exact_nelbo(data, config("absorbing", T=T, V=4), form) - data.nll
            assert gap == pytest.approx(mi / T, abs=2e-6), (T, form, gap, mi / T)
    one = ExactOracle.random_table(3, 1, vocab_size=4, seed=1)
    assert exact_nelbo(one, config("absorbing", T=5, V=4), "paper") == pytest.approx(one.nll, abs=2e-6)


def test_uniform_mixture_form_is_exact_and_eq4_is_not():
    data = ExactOracle.random_table(3, 1, vocab_size=3, seed=2)
    gaps = {}
    for T in (2, 8, 32):
        cfg = config("uniform", T=T, V=3)
        prior = float(cfg.discrete_schedule().alpha_bar[T])  # the cosine schedule leaves q(x_T) ~1e-3 off uniform
        mix = exact_nelbo(data, cfg, "mixture") - data.nll
        assert abs(mix) < 1e-5 + prior, (T, mix)
        gaps[T] = exact_nelbo(data, cfg, "paper") - data.nll
    # eq. 4 double-counts q(x_t | x0): a gap that does not vanish as T grows
    assert gaps[2] > 0.03 and gaps[32] >= gaps[2] - 1e-3, gaps
    # with two positions the mixture form's only error is the factorisation over positions: O(1/T)
    data2 = ExactOracle.random_table(3, 2, vocab_size=3, seed=0)
    g4, g16 = (exact_nelbo(data2, config("uniform", T=T, V=3), "mixture") - data2.nll for T in (4, 16))
    assert 0 < g16 < g4 / 2.5, (g4, g16)


def test_ancestral_sampler_law_with_the_exact_denoiser():
    # absorbing: TV to p_data falls like 1/T
    data = ExactOracle.random_table(3, 2, vocab_size=4, seed=0)
    xts = all_states(4, 2)
    target = data.prob_of(xts)
    tv = {
        T: tv_distance(exact_sample_distribution(data, config("absorbing", T=T, V=4), "mixture", T), target)
        for T in (2, 4, 8, 16)
    }
    for T in (4, 8, 16):
        assert 1.5 < tv[T // 2] / tv[T] < 2.5, tv
    # uniform, one position: the mixture form is exact at every stride, eq. 4 is not
    data1 = ExactOracle.random_table(3, 1, vocab_size=3, seed=2)
    target1 = data1.prob_of(all_states(3, 1))
    cfg = config("uniform", T=16, V=3)
    for steps in (16, 5, 1):
        assert tv_distance(exact_sample_distribution(data1, cfg, "mixture", steps), target1) < 1e-5
    assert tv_distance(exact_sample_distribution(data1, cfg, "paper", 16), target1) > 0.02


@pytest.mark.parametrize(
    "graph_name,form,x_t", [("uniform", "mixture", 1), ("uniform", "paper", 1), ("absorbing", "mixture", 4)]
)
def test_sampler_draws_follow_its_probabilities(graph_name, form, x_t):
    # the step draws from a three-component mixture without building p(x_s | x_t); its draws must
    # follow the full closed form (return_probs)
    graph = get_graph(graph_name, 5)
    schedule = config(graph_name, T=10, V=5).discrete_schedule()
    sampler = D3PMAncestralSampler(graph, schedule, parameterization=form, return_probs=True)
    n = 30000
    logits = torch.tensor([0.3, -1.0, 2.0, 0.0, 0.5])
    if graph.absorbing:
        logits[-1] = -1e6
    log_x0 = torch.log_softmax(logits, -1).expand(n, 1, 5)
    for k_t, k_s in ((6, 3), (2, 0), (10, 9)):
        out = sampler.step(
            log_x0,
            torch.full((n, 1), x_t),
            torch.full((n,), k_t / 10),
            torch.full((n,), k_s / 10),
            generator=torch.Generator().manual_seed(k_t),
        )
        freq = torch.bincount(out.prev_sample[:, 0], minlength=5).double() / n
        p = out.probs[0, 0].double()
        torch.testing.assert_close(out.probs.sum(-1), torch.ones(n, 1))
        assert (freq - p).abs().max() < 4 * (p * (1 - p) / n).sqrt().max() + 1e-3, (k_t, k_s, freq, p)


# ------------------------------------------------------------------------------------------------
# the model through the HF API


class OracleD3PM(D3PMForDiffusionLM):
    """A D3PM whose output is the true p(x0^d | x_k) of a fixed enumerable p_data."""

    data: ExactOracle = None

    def parameterize(self, logits, x_t, level):
        if not hasattr(self, "_liks"):
            self._liks = torch.stack([lik(self.schedule, self.graph, k) for k in range(self.config.num_timesteps + 1)])
        return self.data.posterior_log_probs(x_t, self._liks[level.step]).float()


def test_likelihood_api_and_generate_with_the_exact_denoiser():
    data = ExactOracle.random_table(3, 2, vocab_size=4, seed=0)
    cfg = config("absorbing", T=4, V=4, length=2)
    torch.manual_seed(0)
    model = OracleD3PM(cfg).eval()
    model.data = data
    exact = exact_nelbo(data, cfg, "mixture")
    rows = data.states.repeat(150, 1)
    weights = data.p.repeat(150) / 150
    nelbo = model.negative_elbo(rows, num_samples=4, generator=torch.Generator().manual_seed(0))
    est = float((weights * nelbo.double()).sum())
    assert est == pytest.approx(exact, abs=0.03), (est, exact)
    # generate: the empirical law of the samples is the exactly propagated one
    x = model.generate(num_return_sequences=3000, max_length=2, seed=0)
    assert (x < 3).all()  # no mask left
    freq = torch.bincount(x[:, 0] * 4 + x[:, 1], minlength=16).double() / len(x)
    mu = exact_sample_distribution(data, cfg, "mixture", 4)
    assert tv_distance(freq, mu) < 0.05


def toy_dataset(v, length, rows=32):
    g = torch.Generator().manual_seed(0)
    patterns = torch.randint(0, v - 1, (3, length), generator=g)
    ids = patterns[torch.arange(rows) % 3].tolist()
    return Dataset.from_dict({"input_ids": ids, "labels": ids})


@pytest.mark.parametrize("graph_name", ["absorbing", "uniform"])
def test_trainer_save_load_auto_and_generate(tmp_path, graph_name):
    torch.manual_seed(0)
    cfg = config(
        graph_name, T=20, V=12, length=8, reverse_parameterization="paper" if graph_name == "absorbing" else "mixture"
    )
    model = D3PMForDiffusionLM(cfg)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        report_to="none",
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
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
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert torch.isfinite(torch.tensor(trainer.evaluate()["eval_loss"]))

    model.save_pretrained(tmp_path / "ckpt")
    for auto in (AutoModel, AutoModelForMaskedLM):
        loaded = auto.from_pretrained(tmp_path / "ckpt").eval()
        assert (
            isinstance(loaded, D3PMForDiffusionLM)
            and loaded.config.reverse_parameterization == cfg.reverse_parameterization
        )
    model.eval()
    x = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0.35, 1.0])
    torch.testing.assert_close(loaded(input_ids=x, timesteps=t).logits, model(input_ids=x, timesteps=t).logits)
    assert loaded.generation_config.sampler == "d3pm_ancestral"
    assert loaded.generation_config.sampler_kwargs == {"parameterization": cfg.reverse_parameterization}
    assert loaded.generation_config.num_inference_steps == 20 and loaded.generation_config.noise_removal is False

    prompt = torch.tensor([[1, 2, 3]])
    out = loaded.generate(input_ids=prompt, max_new_tokens=5, num_inference_steps=7, seed=0)
    assert out.shape == (1, 8) and torch.equal(out[:, :3], prompt)
    infill = torch.zeros(1, 8, dtype=torch.bool)
    infill[0, 2:5] = True
    ids = torch.tensor([[1, 2, 0, 0, 0, 6, 7, 8]])
    out = loaded.generate(input_ids=ids, infill_mask=infill, seed=1)
    assert torch.equal(out[~infill], ids[~infill])
    if graph_name == "absorbing":
        assert (out != cfg.mask_token_id).all()


def test_bad_input():
    with pytest.raises(ValueError, match="num_timesteps"):
        config(T=0)
    with pytest.raises(ValueError, match="beta"):
        config("uniform", T=2, V=4, betas=[0.5, 1.5])
    with pytest.raises(ValueError, match="beta"):
        config("uniform", T=2, V=4, betas=[0.0, 0.5])
    with pytest.raises(ValueError, match="beta"):
        config("uniform", T=3, V=4, betas=[0.2, 1.0, 0.5])  # beta = 1 before T
    with pytest.raises(ValueError, match="betas must have"):
        config("uniform", T=3, V=4, betas=[0.2, 0.5])
    with pytest.raises(ValueError, match="reverse_parameterization"):
        config(reverse_parameterization="eq4")
    with pytest.raises(ValueError, match="hybrid_loss_coeff"):
        config(hybrid_loss_coeff=-1.0)
    model = D3PMForDiffusionLM(config(T=10, V=6))
    x = torch.randint(0, 5, (2, 4))
    with pytest.raises(ValueError, match="t_min"):
        model.negative_elbo(x, t_min=0.1)
    with pytest.raises(ValueError, match="k / T"):
        model(input_ids=x, timesteps=0.55)
    with pytest.raises(ValueError, match="k = 1..T"):
        model(input_ids=x, timesteps=0.0, labels=x)
    with pytest.raises(ValueError, match="num_inference_steps"):
        model.generate(max_length=4, num_inference_steps=11)
    with pytest.raises(ValueError, match="parameterization"):
        model.generate(max_length=4, sampler_kwargs={"parameterization": "x"})
