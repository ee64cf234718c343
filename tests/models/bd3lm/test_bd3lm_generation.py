"""Block-by-block generation of BD3-LM through ``generate``: the KV cache is exact (cached logits
equal the uncached and the training-forward logits at every step of every block), prompts,
lengths past the model length, stopping at EOS, the samplers (first-hitting batched with
per-sample times, ancestral), nucleus sampling, exact sampling with an exact denoiser, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hf_ddlm import BD3LMForDiffusionLM
from hf_ddlm.generation import block_decoding
from hf_ddlm.generation.cache import BlockKVCache
from hf_ddlm.samplers import filter_logits, get_sampler, official_nucleus
from hf_ddlm.testing import ExactOracle, tiny_config

from .bd3lm_testlib import random_clean, tiny_bd3lm

MASK = 12  # tiny_bd3lm's vocabulary is 13
TOL = dict(rtol=1e-5, atol=2e-5)


def record_block_calls(monkeypatch):
    """Every network call of the decoding loop: (canvas, lo, hi, block positions [B, K], their
    log-probs [B, K, V]). First-hitting asks for the position it reveals only."""
    calls = []
    original = block_decoding._block_log_probs

    def recorder(model, x, lo, hi, t, cache, key_mask, window, positions=None):
        out = original(model, x, lo, hi, t, cache, key_mask, window, positions)
        if positions is None:
            positions = torch.arange(hi - lo).expand(x.shape[0], hi - lo)
        calls.append((x.clone(), lo, hi, positions.clone(), out.clone()))
        return out

    monkeypatch.setattr(block_decoding, "_block_log_probs", recorder)
    return calls


def training_forward_logits(model, x, lo, hi):
    """The 2L training forward's logits of block [lo, hi) for the canvas state x: x_t carries the
    block being denoised, x_0 the clean prefix (everything else is arbitrary and must not matter)."""
    x0 = torch.where(x == MASK, torch.zeros_like(x), x)
    x_t = x0.clone()
    x_t[:, lo:hi] = x[:, lo:hi]
    x_t[:, hi:] = MASK
    with torch.no_grad():
        return model(input_ids=x_t, labels=x0, timesteps=0.5).logits[:, lo:hi]


@pytest.mark.parametrize("sampler,kwargs", [("first_hitting", {}), ("block_ancestral", {"num_inference_steps": 6})])
def test_cached_uncached_and_training_logits_agree_at_every_step(monkeypatch, sampler, kwargs):
    model = tiny_bd3lm(block_size=4, length=16, layers=2)
    prompt = random_clean(3, 6, 13)  # one whole prompt block, and a block that starts with 2 given tokens
    runs, calls = {}, record_block_calls(monkeypatch)
    for use_cache in (True, False):
        seq = model.generate(
            input_ids=prompt, max_new_tokens=10, seed=3, use_cache=use_cache, sampler=sampler, **kwargs
        )
        runs[use_cache] = (seq, list(calls))
        calls.clear()
    (seq_c, calls_c), (seq_u, calls_u) = runs[True], runs[False]
    assert torch.equal(seq_c, seq_u) and seq_c.shape == (3, 16) and torch.equal(seq_c[:, :6], prompt)
    assert len(calls_c) == len(calls_u) > 0
    blocks_seen = set()
    for (x, lo, hi, pos, cached), (x_u, lo_u, _, pos_u, uncached) in zip(calls_c, calls_u):
        assert torch.equal(x, x_u) and lo == lo_u and torch.equal(pos, pos_u)
        torch.testing.assert_close(cached, uncached, **TOL)
        training = training_forward_logits(model, x, lo, hi).gather(1, pos[..., None].expand(-1, -1, 13))
        torch.testing.assert_close(cached, training, **TOL)
        blocks_seen.add(lo)
    assert blocks_seen == {4, 8, 12}


def test_first_hitting_reveals_one_token_per_network_call():
    model = tiny_bd3lm(block_size=4, length=16)
    out = model.generate(
        input_ids=random_clean(2, 5, 13),
        max_new_tokens=11,
        seed=0,
        return_dict_in_generate=True,
        output_trajectory=True,
    )
    assert out.sequences.shape == (2, 16) and not (out.sequences == MASK).any()
    assert out.num_function_evaluations == 11  # one NFE per generated token
    # the prompt block; blocks 1 and 2 are committed by the next block's first forward
    assert out.num_commit_evaluations == 1
    before = None
    for state in out.trajectory:
        count = (state == MASK).sum(-1)
        if before is not None:
            assert ((before - count) == 1).all()  # every row reveals exactly one token per step
        before = count if count.sum() else None
    # a time-conditioned model commits with a separate forward at the block's last t (official)
    timed = tiny_bd3lm(block_size=4, length=16, time_conditioning=True)
    out = timed.generate(input_ids=random_clean(2, 5, 13), max_new_tokens=11, seed=0, return_dict_in_generate=True)
    assert out.num_function_evaluations == 11 and out.num_commit_evaluations == 1 + 2
    assert not (out.sequences == MASK).any()


def test_first_hitting_times_are_per_sample():
    # s = t u^(1/n): P(s/t <= a) = a^n for a row with n masked tokens; a row with none keeps t
    sampler = get_sampler("first_hitting", tiny_bd3lm().graph, tiny_bd3lm().schedule)
    rows = torch.tensor([[MASK, 1, 2, 3], [MASK, MASK, 2, 3], [MASK] * 4, [0, 1, 2, 3]])
    x = rows.repeat(4000, 1)
    t = torch.rand(len(x), generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
    s = sampler.next_time(t, x, torch.Generator().manual_seed(1))
    ratio = (s / t).view(4000, 4)
    assert (ratio[:, 3] == 1).all()
    for n, column in ((1, 0), (2, 1), (4, 2)):
        for a in (0.3, 0.6, 0.9):
            p = a**n
            assert abs((ratio[:, column] <= a).double().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / 4000)


def test_ancestral_reuses_the_output_when_nothing_changed():
    model = tiny_bd3lm(block_size=4, length=16)
    out = model.generate(
        max_length=16,
        num_return_sequences=2,
        seed=0,
        sampler="block_ancestral",
        num_inference_steps=64,
        return_dict_in_generate=True,
    )
    assert not (out.sequences == MASK).any()
    # a call only after a step that changed a token (of either row), plus the first of each block
    assert out.num_function_evaluations <= 4 * (2 * 4 + 1) < 4 * 64


def test_generation_past_the_model_length():
    model = tiny_bd3lm(block_size=4, length=16, layers=2)
    for use_cache in (True, False):
        seq = model.generate(input_ids=random_clean(2, 3, 13), max_new_tokens=50, seed=1, use_cache=use_cache)
        assert seq.shape == (2, 53) and not (seq == MASK).any()  # 53 is not a multiple of 4: cut from whole blocks
    # a prompt longer than the model length is encoded through the sliding cache
    seq = model.generate(input_ids=random_clean(2, 22, 13), max_new_tokens=8, seed=1)
    assert seq.shape == (2, 30) and not (seq == MASK).any()


def test_rebasing_the_rotary_positions_does_not_change_the_logits():
    # past the model length, positions are re-based (keys re-rotated) at a chosen period: every
    # period gives the same attention
    model = tiny_bd3lm(block_size=4, length=16, layers=2)
    x = random_clean(2, 80, 13)
    masked = torch.full((2, 4), MASK)
    often = BlockKVCache.for_model(model, rebase_every=4)
    never = BlockKVCache.for_model(model, rebase_every=10**9)
    with torch.no_grad():
        for k in range(20):
            block = x[:, 4 * k : 4 * k + 4]
            a = model(input_ids=block, cache=often.commit()).logits
            b = model(input_ids=block, cache=never.commit()).logits
            torch.testing.assert_close(a, b, **TOL)
            a = model(input_ids=masked, cache=often.read()).logits
            b = model(input_ids=masked, cache=never.read()).logits
            torch.testing.assert_close(a, b, **TOL)
    assert never.rope_offset == 80 - 12 and often.rope_offset == 0 and often.length == never.length == 12


def test_left_padded_prompts_are_not_attended(monkeypatch):
    # a row padded by a whole block (positions and blocks keep their alignment) gets the logits
    # of the same prompt alone, with and without the cache
    model = tiny_bd3lm(block_size=4, length=16, layers=2)
    prompt = random_clean(1, 6, 13)
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), prompt], 1)
    other = random_clean(1, 10, 13, seed=7)
    batch = torch.cat([padded, other])
    attention = torch.ones(2, 10, dtype=torch.long)
    attention[0, :4] = 0
    calls = record_block_calls(monkeypatch)
    for use_cache in (True, False):
        calls.clear()
        model.generate(input_ids=batch, attention_mask=attention, max_new_tokens=2, seed=0, use_cache=use_cache)
        model.generate(input_ids=prompt, max_new_tokens=2, seed=0, use_cache=use_cache)
        first_batched, first_alone = calls[0][4], calls[len(calls) // 2][4]
        assert torch.equal(calls[0][3][:1], calls[len(calls) // 2][3])
        torch.testing.assert_close(first_batched[:1], first_alone, **TOL)


def test_variable_length_stops_at_eos():
    eos = 5
    model = tiny_bd3lm(block_size=4, length=16)
    with torch.no_grad():
        model.backbone.output_layer.linear.bias[eos] += 3.0  # EOS is likely
    prompt = torch.tensor([[eos, 1], [eos, 2], [eos, 3]])  # an EOS in the prompt (BOS = EOS) does not stop
    out = model.generate(
        input_ids=prompt, max_new_tokens=60, seed=0, eos_token_id=eos, pad_token_id=0, return_dict_in_generate=True
    )
    seq = out.sequences
    assert out.num_function_evaluations < 60  # stopped before the requested length
    stops = []
    for row in seq:
        generated = (row[2:] == eos).nonzero()
        assert len(generated) > 0
        stop = 2 + int(generated[0])
        assert (row[stop + 1 :] == 0).all()
        stops.append(stop)
    assert seq.shape[1] == max(stops) + 1


def test_nucleus_official_and_hf_differ_at_the_crossing_token():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64)
    official = official_nucleus(probs, 0.7)  # keeps cumulative mass <= 0.7: only the first
    hf = filter_logits(probs.log(), top_p=0.7).softmax(-1)  # keeps the token that crosses 0.7
    torch.testing.assert_close(official, torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64))
    torch.testing.assert_close(hf, torch.tensor([[0.625, 0.375, 0, 0]], dtype=torch.float64))
    torch.testing.assert_close(official_nucleus(probs, 0.8), hf.new_tensor([[0.625, 0.375, 0, 0]]))


@pytest.mark.parametrize("kwargs", [{"sampler_kwargs": {"nucleus_p": 1e-6}}, {"top_p": 1e-6}])
def test_tiny_nucleus_reveals_the_argmax(monkeypatch, kwargs):
    model = tiny_bd3lm(block_size=4, length=16)
    calls = record_block_calls(monkeypatch)
    out = model.generate(
        max_length=16, num_return_sequences=2, seed=0, return_dict_in_generate=True, output_trajectory=True, **kwargs
    )
    for (x, lo, hi, pos, log_probs), after in zip(calls, out.trajectory):
        revealed = (x[:, lo:hi] == MASK) & (after[:, lo:hi] != MASK)
        assert (revealed.sum(-1) == 1).all() and torch.equal(revealed.int().argmax(-1, keepdim=True), pos)
        assert torch.equal(after[:, lo:hi].gather(1, pos), log_probs.argmax(-1))


class BlockOracleBackbone(nn.Module):
    """Exact p(x0 | clean prefix, block) by enumeration: later positions are marginalised (padded
    with the mask). Sampling mode only; it reads no cache."""

    def __init__(self, oracle):
        super().__init__()
        self.oracle = oracle
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, sigma, attention_mask=None, position_ids=None, kv_caches=None, output_positions=None):
        n, length = input_ids.shape[1], self.oracle.length
        full = torch.cat([input_ids, torch.full((input_ids.shape[0], length - n), MASK_ORACLE)], 1)
        out = self.oracle.posterior(full)[:, :n].clamp_min(1e-30).log().float()
        if output_positions is not None:
            out = out.gather(1, output_positions[..., None].expand(-1, -1, out.shape[-1]))
        return out


MASK_ORACLE = 2


@pytest.mark.parametrize("sampler,kwargs", [("first_hitting", {}), ("block_ancestral", {"num_inference_steps": 64})])
def test_an_exact_denoiser_samples_the_data_distribution(sampler, kwargs):
    # block decoding with the exact conditionals is an exact sampler (first-hitting: exactly; the
    # grid: up to the chance of two tokens of a block unmasking in one of 64 steps)
    oracle = ExactOracle.random(vocab_size=3, length=4, seed=3)
    model = BD3LMForDiffusionLM(
        tiny_config(BD3LMConfig_, vocab_size=3, max_position_embeddings=4, block_size=2, ignore_bos=False)
    ).eval()
    model.backbone = BlockOracleBackbone(oracle)
    samples = model.generate(
        max_length=4, num_return_sequences=3000, seed=0, use_cache=False, sampler=sampler, **kwargs
    )
    assert oracle.total_variation(samples) < 0.05
    # a sampler that ignored the prefix would be far off: the blocks are strongly correlated
    independent = torch.cat(
        [
            oracle.sample(3000, torch.Generator().manual_seed(1))[:, :2],
            oracle.sample(3000, torch.Generator().manual_seed(2))[:, 2:],
        ],
        1,
    )
    assert oracle.total_variation(independent) > 0.15


from hf_ddlm import BD3LMConfig as BD3LMConfig_  # noqa: E402


def test_streamer_sees_the_prompt_then_every_block():
    class Collect:
        def __init__(self):
            self.parts, self.ended = [], False

        def put(self, value):
            self.parts.append(value)

        def end(self):
            self.ended = True

    model = tiny_bd3lm(block_size=4, length=16)
    streamer = Collect()
    seq = model.generate(input_ids=random_clean(1, 4, 13), max_new_tokens=12, seed=0, streamer=streamer)
    assert streamer.ended and [p.shape[1] for p in streamer.parts] == [4, 4, 4, 4]
    assert torch.equal(torch.cat(streamer.parts, 1), seq)


def test_bad_generation_input():
    model = tiny_bd3lm(block_size=4, length=16)
    with pytest.raises(ValueError, match="shorter than max_length"):
        model.generate(input_ids=random_clean(1, 10, 13), max_length=8)
    for eos in (MASK, 13, -1):
        with pytest.raises(ValueError, match="eos_token_id .* never"):
            model.generate(max_length=8, eos_token_id=eos)
    with pytest.raises(ValueError, match="nucleus_p"):
        model.generate(max_length=8, sampler_kwargs={"nucleus_p": 0.0})
    with pytest.raises(ValueError, match="reads 'log_score'"):
        model.generate(max_length=8, sampler="analytic")


def test_the_cache_is_kept_in_the_model_dtype(monkeypatch):
    # a bfloat16 model caches bfloat16 keys (the official cache is bf16 whatever the model); its
    # cached logits equal its uncached ones up to bf16 rounding of the different op orders
    model = tiny_bd3lm(block_size=4, length=16, layers=2).to(torch.bfloat16)
    cache = BlockKVCache.for_model(model)
    x = random_clean(2, 8, 13)
    with torch.no_grad():
        model(input_ids=x[:, :4], cache=cache.commit())
        cached = model(input_ids=torch.cat([x[:, 4:6], torch.full((2, 2), MASK)], 1), cache=cache.read()).logits
        uncached = model(input_ids=torch.cat([x[:, :6], torch.full((2, 2), MASK)], 1)).logits[:, 4:]
    assert cache.keys[0].dtype == torch.bfloat16 and cache.values[1].dtype == torch.bfloat16
    finite = uncached > -1e5
    torch.testing.assert_close(cached[finite].float(), uncached[finite].float(), rtol=2e-2, atol=5e-2)
    seq = model.generate(max_length=16, num_return_sequences=2, seed=0)
    assert seq.shape == (2, 16) and not (seq == MASK).any()


def test_infilling_keeps_given_tokens_in_later_blocks():
    model = tiny_bd3lm(block_size=4, length=16)
    ids = random_clean(2, 16, 13)
    infill = torch.ones(2, 16, dtype=torch.bool)
    infill[:, :3] = False  # a prompt that ends inside block 0
    infill[:, 9] = False  # a given token inside block 2
    for use_cache in (True, False):
        seq = model.generate(input_ids=ids, infill_mask=infill, seed=0, use_cache=use_cache)
        assert torch.equal(seq[~infill], ids[~infill]) and not (seq == MASK).any()
