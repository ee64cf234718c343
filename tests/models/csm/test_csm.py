"""Concrete Score Matching: the objectives and Metropolis-Hastings by exact enumeration, and the
model through the HF API."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from transformers import AutoModel, Trainer, TrainingArguments

from hf_ddlm import CSMConfig, CSMForDiffusionLM
from hf_ddlm.likelihood import perplexity_bound
from hf_ddlm.objectives.concrete_score import concrete_score_explicit_loss, concrete_score_first_term, sample_neighbours
from hf_ddlm.samplers import MetropolisHastingsSampler
from hf_ddlm.testing import ExactOracle, state_index, tiny_config, tv_distance

F64 = torch.float64
V, L = 4, 3


def config(**kw):
    kw.setdefault("vocab_size", V)
    kw.setdefault("max_position_embeddings", L)
    return tiny_config(CSMConfig, **kw)


def neighbour_index(states, vocab):
    """idx[n, d, v] = index of states[n] with position d set to v."""
    n, length = states.shape
    out = torch.empty(n, length, vocab, dtype=torch.long)
    for d in range(length):
        for v in range(vocab):
            y = states.clone()
            y[:, d] = v
            out[:, d, v] = state_index(y, vocab)
    return out


def true_concrete_score(data: ExactOracle):
    nb = neighbour_index(data.states, data.vocab_size)
    return data.p[nb] / data.p[:, None, None] - 1  # 0 at v = x^d


def exact_implicit(table, data: ExactOracle):
    """J_CSM (eq. 2.4) by enumeration: E_p sum (c^2 + 2c) - 2 sum_y p(y) sum_{x -> y} c(x)_{d, y^d}."""
    first = (data.p * concrete_score_first_term(table, data.states).sum(-1)).sum()
    nb = neighbour_index(data.states, data.vocab_size)
    second = 0.0
    for d in range(data.length):
        for v in range(data.vocab_size):
            x = nb[:, d, v]  # the neighbour x of y with y^d -> v; its coordinate (d, y^d) points back to y
            moved = data.states[:, d] != v
            second = second + (data.p * torch.where(moved, table[x, d, data.states[:, d]], 0.0)).sum()
    return first - 2 * second


def exact_explicit(table, data: ExactOracle):
    return (data.p * concrete_score_explicit_loss(table, true_concrete_score(data), data.states).sum(-1)).sum()


# ------------------------------------------------------------------------------------------------
# S1-S3: the concrete score and the objectives


def test_concrete_score_determines_p():
    data = ExactOracle.random_table(V, L, vocab_size=V, seed=0)
    c = true_concrete_score(data)
    # walk from state 0 changing one position at a time: p(x') = p(x) (1 + c(x)_{d,v})
    logp = torch.full((len(data.states),), float("nan"), dtype=F64)
    logp[0] = 0.0
    frontier = [0]
    nb = neighbour_index(data.states, V)
    while frontier:
        n = frontier.pop()
        for d in range(L):
            for v in range(V):
                m = int(nb[n, d, v])
                if torch.isnan(logp[m]):
                    logp[m] = logp[n] + torch.log1p(c[n, d, v])
                    frontier.append(m)
    torch.testing.assert_close(torch.softmax(logp, 0), data.p)


def test_explicit_and_implicit_objectives_differ_by_a_constant():
    data = ExactOracle.random_table(V, L, vocab_size=V, seed=0)
    c_p = true_concrete_score(data)
    const = float((data.p * (c_p**2).sum((-1, -2))).sum())  # E_p ||c_p||^2
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        table = torch.randn(len(data.states), L, V, generator=g, dtype=F64)
        gap = float(exact_explicit(table, data) - exact_implicit(table, data))
        assert gap == pytest.approx(const, rel=1e-10)
    # the implicit objective is stationary (and minimal, being a convex quadratic) at the true score
    table = c_p.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(exact_implicit(table, data), table)
    assert grad.abs().max() < 1e-12
    assert float(exact_explicit(c_p, data)) == pytest.approx(0.0, abs=1e-12)


class TableCSM(CSMForDiffusionLM):
    """A CSM whose concrete score is looked up in a table over all states."""

    table: torch.Tensor = None

    def parameterize(self, logits, x, level=None):
        return self.table[state_index(x, self.config.vocab_size)].to(logits.dtype)


def test_training_estimator_is_unbiased():
    data = ExactOracle.random_table(V, L, vocab_size=V, seed=0)
    torch.manual_seed(0)
    model = TableCSM(config(num_neighbour_samples=2))
    model.table = torch.randn(len(data.states), L, V, generator=torch.Generator().manual_seed(1), dtype=F64) * 0.5
    reps = 150
    y = data.states.repeat(reps, 1)
    with torch.no_grad():
        per_seq = (
            model(input_ids=y, labels=y, generator=torch.Generator().manual_seed(2)).loss_per_token.double().sum(-1)
        )
    w = data.p.repeat(reps) / reps
    est = float((w * per_seq).sum())
    stderr = float(((w * reps) * (per_seq - est) ** 2).sum().sqrt() / math.sqrt(len(y)))
    exact = float(exact_implicit(model.table, data))
    assert abs(est - exact) < 4 * stderr, (est, exact, stderr)


def test_neighbours_are_uniform_hamming_one_moves_on_labelled_positions():
    y = torch.tensor([[0, 1, 2]]).expand(24000, 3)
    mask = torch.tensor([[True, False, True]]).expand(24000, 3)
    nb, pos, counts = sample_neighbours(y, mask, V, 1, torch.Generator().manual_seed(0))
    assert ((nb != y).sum(-1) == 1).all() and (pos != 1).all() and (counts == 2 * (V - 1)).all()
    freq = torch.bincount(state_index(nb, V), minlength=V**L).double() / len(nb)
    assert (freq[freq > 0] - 1 / 6).abs().max() < 0.015 and (freq > 0).sum() == 6


# ------------------------------------------------------------------------------------------------
# S4: Metropolis-Hastings


def test_mh_with_exact_ratios_is_stationary_at_p_data():
    data = ExactOracle.random_table(V, L, vocab_size=V, seed=0)
    sampler = MetropolisHastingsSampler(None, None, return_probs=True)
    out = sampler.step(true_concrete_score(data).float(), data.states)
    kernel = kernel_from_probs_mh(out.probs, data.states)
    torch.testing.assert_close(kernel.sum(1), torch.ones(len(data.states), dtype=F64))
    assert (data.p @ kernel - data.p).abs().sum() < 1e-6
    mu = torch.full_like(data.p, 1 / len(data.p))
    tvs = []
    for step in range(1, 201):
        mu = mu @ kernel
        if step in (1, 10, 200):
            tvs.append(tv_distance(mu, data.p))
    assert tvs[0] > tvs[1] > tvs[2] and tvs[2] < 1e-3, tvs


def kernel_from_probs_mh(probs, states):
    """The MH kernel on the joint space: moves to Hamming-1 neighbours, the rest stays."""
    n, length, v = probs.shape
    k = torch.zeros(n, n, dtype=F64)
    nb = neighbour_index(states, v)
    for d in range(length):
        for tok in range(v):
            moved = states[:, d] != tok
            k[torch.arange(n)[moved], nb[moved, d, tok]] += probs[moved, d, tok].double()
    stay = 1 - k.sum(1)
    return k + torch.diag(stay)


def test_mh_clamps_the_learned_ratio():
    sampler = MetropolisHastingsSampler(None, None, return_probs=True)
    c = torch.zeros(1, 2, 3)
    c[0, 0, 1] = -3.0  # 1 + c < 0: never accepted
    c[0, 1, 2] = 5.0  # 1 + c > 1: always accepted
    out = sampler.step(c, torch.zeros(1, 2, dtype=torch.long))
    assert out.probs[0, 0, 1] == 0 and out.probs[0, 1, 2] == pytest.approx(1 / (2 * 2))
    assert (out.probs >= 0).all() and out.probs.sum() == pytest.approx(1.0)
    n = 20000
    moves = sampler.step(
        c.expand(n, 2, 3), torch.zeros(n, 2, dtype=torch.long), generator=torch.Generator().manual_seed(0)
    ).prev_sample
    assert not (moves[:, 0] == 1).any()
    assert (moves[:, 1] == 2).double().mean() == pytest.approx(0.25, abs=0.015)


def test_generate_runs_mh_with_the_exact_ratios():
    data = ExactOracle.random_table(3, 2, vocab_size=3, seed=4)
    torch.manual_seed(0)
    model = TableCSM(config(vocab_size=3, max_position_embeddings=2)).eval()
    model.table = true_concrete_score(data)
    steps, n = 25, 1500
    out = model.generate(
        num_return_sequences=n, max_length=2, num_inference_steps=steps, seed=0, return_dict_in_generate=True
    )
    freq = torch.bincount(state_index(out.sequences, 3), minlength=9).double() / n
    # the exact law after 25 MH steps from the uniform start
    kernel = kernel_from_probs_mh(
        MetropolisHastingsSampler(None, None, return_probs=True).step(model.table.float(), data.states).probs,
        data.states,
    )
    mu = torch.full((9,), 1 / 9, dtype=F64) @ torch.linalg.matrix_power(kernel, steps)
    assert tv_distance(freq, mu) < 0.05 and tv_distance(mu, data.p) < 0.02
    assert out.num_function_evaluations <= steps + 1


# ------------------------------------------------------------------------------------------------
# the model through the HF API


def test_trainer_save_load_and_generate(tmp_path):
    torch.manual_seed(0)
    cfg = config(vocab_size=12, max_position_embeddings=8, score_parameterization="exp")
    model = CSMForDiffusionLM(cfg)
    g = torch.Generator().manual_seed(0)
    patterns = torch.randint(0, 12, (3, 8), generator=g)
    ids = patterns[torch.arange(16) % 3].tolist()
    ds = Dataset.from_dict({"input_ids": ids, "labels": ids})
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
    trainer = Trainer(model=model, args=args, train_dataset=ds, eval_dataset=ds.select(range(4)))
    trainer.train()
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)
    assert math.isfinite(trainer.evaluate()["eval_loss"])
    model.save_pretrained(tmp_path / "ckpt")
    loaded = AutoModel.from_pretrained(tmp_path / "ckpt").eval()
    assert isinstance(loaded, CSMForDiffusionLM) and loaded.config.score_parameterization == "exp"
    x = torch.tensor(ids[:2])
    c = loaded(input_ids=x).logits
    torch.testing.assert_close(c, model.eval()(input_ids=x).logits)
    assert (c > -1).all() and (torch.gather(c, -1, x[..., None]) == 0).all()
    assert loaded.generation_config.sampler == "metropolis_hastings"
    prompt = torch.tensor([[1, 2, 3]])
    out = loaded.generate(input_ids=prompt, max_new_tokens=5, num_inference_steps=10, seed=0)
    assert out.shape == (1, 8) and torch.equal(out[:, :3], prompt)
    infill = torch.zeros(1, 8, dtype=torch.bool)
    infill[0, 2:5] = True
    ids0 = torch.tensor([[1, 2, 0, 0, 0, 6, 7, 8]])
    out = loaded.generate(input_ids=ids0, infill_mask=infill, num_inference_steps=10, seed=1)
    assert torch.equal(out[~infill], ids0[~infill])


def test_bad_input():
    model = CSMForDiffusionLM(config())
    x = torch.randint(0, V, (2, L))
    assert model.has_likelihood_bound is False
    with pytest.raises(ValueError, match="no likelihood bound"):
        model.negative_elbo(x)
    with pytest.raises(ValueError, match="no likelihood bound"):
        perplexity_bound(model, x)
    with pytest.raises(ValueError, match="num_inference_steps"):
        model.generate(max_length=L, num_inference_steps=0)
    with pytest.raises(ValueError, match="Metropolis-Hastings"):
        MetropolisHastingsSampler(None, None).set_timesteps(0)
    with pytest.raises(ValueError, match="graph"):
        config(graph="absorbing")
    with pytest.raises(ValueError, match="score_parameterization"):
        config(score_parameterization="softplus")
    with pytest.raises(ValueError, match="num_neighbour_samples"):
        config(num_neighbour_samples=0)
    with pytest.raises(ValueError, match="time_conditioning"):
        config(time_conditioning=True)
