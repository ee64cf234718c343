"""ReMDM remasking and first-hitting sampling of MDLM with the exact denoiser of an enumerable p_data.

With the true p(x0 | x_t), ReMDM's posterior keeps MDLM's marginals for any valid sigma schedule
(Wang et al. 2025, sec. 3), so sampling reaches p_data as the steps grow, like the ancestral sampler
(the same sampling floor and tolerance as tests/test_exactness.py), and the loop phase at fixed
alpha leaves the distribution of x_t stationary. First-hitting is exact at any number of steps.
"""

import itertools

import numpy as np
import pytest
import torch

from hf_ddlm import MDLMForDiffusionLM
from hf_ddlm.samplers import REMASKING_SCHEDULES, ReMDMSampler, get_sampler
from hf_ddlm.testing import ExactOracle, oracle_model

LENGTH, CLEAN, NUM_SAMPLES = 3, 3, 8000


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def exact():
    oracle = ExactOracle.random(CLEAN + 1, LENGTH, graph="absorbing", seed=0)
    model = oracle_model(MDLMForDiffusionLM, oracle)
    exact_draws = [oracle.sample(NUM_SAMPLES, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    floor = np.mean([oracle.total_variation(x) for x in exact_draws])
    return model, oracle, floor


def tv_against_steps(model, oracle, sampler, steps_list, **kwargs):
    tv = {}
    for steps in steps_list:
        x = model.generate(
            max_length=LENGTH,
            num_return_sequences=NUM_SAMPLES,
            sampler=sampler,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(steps),
            **kwargs,
        )
        assert (x != oracle.mask_token_id).all()
        tv[steps] = oracle.total_variation(x)
    return tv


@pytest.mark.parametrize(
    "sampler,sampler_kwargs",
    [
        ("remdm_cap", {"eta": 0.5}),
        ("remdm_rescale", {"eta": 0.9}),
        ("remdm_loop", {"eta": 0.05, "alpha_on": 0.5, "t_on": 0.6, "t_off": 0.2}),
    ],
)
def test_remdm_with_the_exact_model_converges_to_p_data(exact, sampler, sampler_kwargs):
    model, oracle, floor = exact
    tv = tv_against_steps(model, oracle, sampler, (2, 32, 128), sampler_kwargs=sampler_kwargs)
    print(sampler, sampler_kwargs, {k: round(v, 4) for k, v in tv.items()}, "floor", round(floor, 4))
    assert tv[2] > floor + 0.1, (tv, floor)
    assert tv[128] < floor + 0.03, (tv, floor)


def test_first_hitting_with_the_exact_model_is_exact_with_one_call_per_token(exact):
    model, oracle, floor = exact
    out = model.generate(
        max_length=LENGTH,
        num_return_sequences=NUM_SAMPLES,
        sampler="first_hitting",
        generator=torch.Generator().manual_seed(0),
        return_dict_in_generate=True,
    )
    assert out.num_function_evaluations == LENGTH  # one network call per revealed token
    tv = oracle.total_variation(out.sequences)
    print("first_hitting TV", round(tv, 4), "floor", round(floor, 4))
    assert tv < floor + 0.03, (tv, floor)


def test_first_hitting_keeps_a_prompt_and_counts_only_free_tokens(exact):
    model, oracle, _ = exact
    prompt = torch.tensor([[1]])
    out = model.generate(
        input_ids=prompt,
        max_new_tokens=2,
        num_return_sequences=5,
        sampler="first_hitting",
        seed=0,
        return_dict_in_generate=True,
    )
    assert (out.sequences[:, 0] == 1).all() and out.num_function_evaluations == 2


def test_the_loop_phase_leaves_p_t_stationary(exact):
    """x_t ~ p_t at alpha_on (exact draws), then 40 loop steps at fixed alpha with the exact model:
    the law of x_t is unchanged (TV to the enumerated p_t at the floor of exact draws)."""
    model, oracle, _ = exact
    alpha_on, v = 0.5, oracle.vocab_size
    sampler = get_sampler("remdm_loop", model.graph, model.schedule, eta=0.2, alpha_on=alpha_on)
    states = torch.tensor(list(itertools.product(range(v), repeat=LENGTH)))
    p_t = oracle.marginal(states, torch.full((len(states),), -np.log(alpha_on), dtype=torch.float64))
    assert abs(float(p_t.sum()) - 1) < 1e-9

    def tv(x):
        idx = (x * v ** torch.arange(LENGTH)).sum(-1)
        counts = torch.bincount(idx, minlength=v**LENGTH).double() / len(x)
        order = (states * v ** torch.arange(LENGTH)).sum(-1)
        return float(0.5 * (counts[order] - p_t).abs().sum())

    def draw_p_t(seed):
        g = torch.Generator().manual_seed(seed)
        x0 = oracle.sample(NUM_SAMPLES, generator=g)
        return x0.masked_fill(torch.rand(x0.shape, generator=g) > alpha_on, oracle.mask_token_id)

    floor = np.mean([tv(draw_p_t(s)) for s in range(3)])
    x, g = draw_p_t(10), torch.Generator().manual_seed(11)
    t = torch.full((NUM_SAMPLES,), 0.4)  # inside (t_off, t_on]: sigma = eta, alpha = alpha_on
    moved = 0
    for _ in range(40):
        with torch.no_grad():
            out = model(input_ids=x, timesteps=t).logits
        new = sampler.step(out, x, t, t - 0.001, g).prev_sample
        moved += int((new != x).sum())
        x = new
    print("loop stationarity TV", round(tv(x), 4), "floor", round(floor, 4))
    assert moved > NUM_SAMPLES  # the loop did remask and reveal
    assert tv(x) < floor + 0.03, (tv(x), floor)


def test_one_remdm_step_has_the_remasking_posterior(exact):
    """The weights of one step: committed tokens stay with 1 - sigma and are remasked with sigma;
    masked ones are revealed with r = (alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t) from p_theta."""
    model, oracle, _ = exact
    states = torch.tensor(list(itertools.product(range(oracle.vocab_size), repeat=LENGTH)))
    sampler = get_sampler("remdm_rescale", model.graph, model.schedule, eta=0.7, move_chance="linear")
    t, s = torch.full((len(states),), 0.6), torch.full((len(states),), 0.45)
    with torch.no_grad():
        out = model(input_ids=states, timesteps=t).logits
    probs = sampler.step(out, states, t, s).probs.double()
    alpha_t, alpha_s = 0.4, 0.55
    sigma = 0.7 * min(1.0, (1 - alpha_s) / alpha_t)
    r = (alpha_s - (1 - sigma) * alpha_t) / (1 - alpha_t)
    mask = oracle.mask_token_id
    masked = states == mask
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs[..., 0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        probs[~masked][:, mask], torch.full_like(probs[~masked][:, mask], sigma), atol=1e-6, rtol=0
    )
    expected = oracle.posterior(states)[masked] * r
    torch.testing.assert_close(probs[masked][:, :mask], expected[:, :mask], atol=1e-6, rtol=0)
    # marginal check of eq. 6: alpha_t (1 - sigma) + (1 - alpha_t) r = alpha_s
    assert abs(alpha_t * (1 - sigma) + (1 - alpha_t) * r - alpha_s) < 1e-12


def test_bad_remasking_parameters_are_refused_naming_the_argument(exact):
    model, _, _ = exact
    graph, schedule = model.graph, model.schedule
    with pytest.raises(ValueError, match=r"remasking must be one of \('cap', 'rescale', 'loop'\)"):
        ReMDMSampler(graph, schedule, remasking="conf")
    assert REMASKING_SCHEDULES == ("cap", "rescale", "loop")
    for eta in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match="eta must be in"):
            ReMDMSampler(graph, schedule, eta=eta)
    with pytest.raises(ValueError, match="t_on > t_off"):
        ReMDMSampler(graph, schedule, remasking="loop", t_on=0.2, t_off=0.4)
    with pytest.raises(ValueError, match="t_on must be in"):
        ReMDMSampler(graph, schedule, remasking="loop", t_on=1.0)
    with pytest.raises(ValueError, match=r"eta must be at most \(1 - alpha_on\) / alpha_on"):
        ReMDMSampler(graph, schedule, remasking="loop", eta=0.5, alpha_on=0.9)
    with pytest.raises(ValueError, match="move_chance"):
        ReMDMSampler(graph, schedule, move_chance="cosine")
    with pytest.raises(ValueError, match="do not pass"):
        get_sampler("remdm_cap", graph, schedule, remasking="loop")
    with pytest.raises(ValueError, match="remasking must be one of"):
        model.generate(max_length=LENGTH, sampler="remdm", sampler_kwargs={"remasking": "max"})


def test_remdm_in_bd3lm_blocks_and_with_a_prompt_and_infilling():
    from hf_ddlm.testing.models import tiny_model

    for method in ("bd3lm", "mdlm"):
        model = tiny_model(method)
        mask = model.graph.mask_token_id
        for sampler in ("remdm_cap", "remdm_loop"):
            x = model.generate(
                input_ids=torch.tensor([[1, 2], [3, 4]]),
                max_new_tokens=6,
                sampler=sampler,
                num_inference_steps=8,
                seed=0,
            )
            assert x.shape[0] == 2 and (x[:, :2] == torch.tensor([[1, 2], [3, 4]])).all() and (x != mask).all()
        ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
        infill = torch.tensor([[False, True, True, False, False, True, True, False]])
        x = model.generate(input_ids=ids, infill_mask=infill, sampler="remdm_rescale", num_inference_steps=8, seed=0)
        assert torch.equal(x[~infill], ids[~infill]) and (x != mask).all()
