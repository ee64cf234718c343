"""BD3-LM model: the attention masks against their specification, the limits of the 2L forward
(block_size = L is MDLM; the vectorised forward is B separate forwards), the per-block time
sampler, padding, FlexAttention, the likelihood API and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from hf_ddlm import BD3LMConfig, BD3LMForDiffusionLM, MDLMForDiffusionLM
from hf_ddlm.backbones.attention import (
    FLEX_ATTENTION_AVAILABLE,
    block_causal_mask,
    block_diff_mask,
    materialize_mask,
)
from hf_ddlm.likelihood import perplexity_bound
from hf_ddlm.models.bd3lm.configuration_bd3lm import official_bd3lm_config_to_dict

from .bd3lm_testlib import mask_at_random, mdlm_config_like, random_clean, tiny_bd3lm, tiny_config

TOL = dict(rtol=1e-5, atol=2e-5)


# --- masks ------------------------------------------------------------------------------------
def spec_mask(length, block):
    """The three rules, written out element by element (BD3-LM sec. 3.2)."""
    m = torch.zeros(2 * length, 2 * length, dtype=torch.bool)
    for q in range(2 * length):
        for k in range(2 * length):
            q_clean, k_clean = q >= length, k >= length
            bq, bk = (q % length) // block, (k % length) // block
            if not q_clean and not k_clean:
                m[q, k] = bq == bk  # within x_t: same block only
            elif not q_clean and k_clean:
                m[q, k] = bk < bq  # x_t -> x_0: strictly earlier blocks
            elif q_clean and k_clean:
                m[q, k] = bk <= bq  # within x_0: block-causal inclusive
            # x_0 -> x_t: never
    return m


@pytest.mark.parametrize("length,block", [(8, 1), (8, 2), (12, 3), (16, 4), (16, 16), (64, 8)])
def test_block_diff_mask_equals_its_three_rules(length, block):
    assert torch.equal(
        materialize_mask(block_diff_mask(block, length), 2 * length, 2 * length)[0, 0], spec_mask(length, block)
    )


@pytest.mark.parametrize("length,block", [(8, 2), (12, 4), (10, 4)])
def test_block_causal_mask_is_the_clean_quadrant(length, block):
    # sampling without a cache uses M_BC on one sequence: the x_0 -> x_0 quadrant of the training mask
    full = spec_mask(length, block)[length:, length:]
    assert torch.equal(materialize_mask(block_causal_mask(block), length, length)[0, 0], full)


# --- limits -----------------------------------------------------------------------------------
def test_block_size_equal_to_length_is_mdlm():
    # with one block, x_t attends to x_t only (its clean copy is unreachable): the x_t half's output
    # is MDLM's bidirectional output with the same weights
    bd3 = tiny_bd3lm(block_size=16, length=16, ignore_bos=False)
    mdlm = MDLMForDiffusionLM(mdlm_config_like(bd3)).eval()
    state = {k: v for k, v in bd3.state_dict().items() if not k.startswith("sampling_eps")}
    mdlm.load_state_dict(state)
    x0 = random_clean(3, 16, 13)
    x_t = mask_at_random(x0, 12, 0.5)
    with torch.no_grad():
        a = bd3(input_ids=x_t, labels=x0, timesteps=0.5).logits
        b = mdlm(input_ids=x_t, timesteps=0.5).logits
    torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("block", [2, 4, 8])
def test_vectorised_forward_equals_separate_forwards(block):
    # block b of the 2L forward sees exactly what a forward on [x_0 blocks < b ; x_t block b] sees
    model = tiny_bd3lm(block_size=block, length=16, ignore_bos=False)
    x0 = random_clean(3, 16, 13)
    x_t = mask_at_random(x0, 12, 0.6)
    with torch.no_grad():
        vectorised = model(input_ids=x_t, labels=x0, timesteps=0.7).logits
        for b in range(16 // block):
            lo, hi = b * block, (b + 1) * block
            alone = model(input_ids=torch.cat([x0[:, :lo], x_t[:, lo:hi]], 1)).logits[:, lo:hi]
            torch.testing.assert_close(vectorised[:, lo:hi], alone, **TOL)


def test_output_of_a_block_ignores_later_blocks_and_noisy_earlier_blocks():
    model = tiny_bd3lm(block_size=4, length=16, ignore_bos=False)
    x0 = random_clean(2, 16, 13)
    x_t = mask_at_random(x0, 12, 0.5)
    other_x0 = x0.clone()
    other_x0[:, 8:] = random_clean(2, 8, 13, seed=5)
    other_x_t = x_t.clone()
    other_x_t[:, :4] = 12
    other_x_t[:, 8:] = 12
    with torch.no_grad():
        a = model(input_ids=x_t, labels=x0, timesteps=0.5).logits[:, 4:8]
        b = model(input_ids=other_x_t, labels=other_x0, timesteps=0.5).logits[:, 4:8]
    torch.testing.assert_close(a, b, **TOL)


# --- time sampling ----------------------------------------------------------------------------
def test_one_t_per_block_stratified_over_batch_and_blocks():
    model = tiny_bd3lm(sampling_eps_min=0.3, sampling_eps_max=0.8)
    t = model.time_sampler(5, num_blocks=4, generator=torch.Generator().manual_seed(0))
    assert t.shape == (5, 4) and ((t >= 0.3) & (t <= 0.8)).all()
    cells = ((t - 0.3) / 0.5 * 20).floor().long().flatten()
    assert sorted(cells.tolist()) == list(range(20))  # one draw in each of the B x blocks strata
    with torch.no_grad():
        out = model(labels=random_clean(5, 16, 13), generator=torch.Generator().manual_seed(1))
    per_block = out.timesteps.view(5, 4, 4)
    assert (per_block == per_block[..., :1]).all() and ((out.timesteps >= 0.3) & (out.timesteps <= 0.8)).all()


def test_range_one_one_is_t_equal_one():
    model = tiny_bd3lm(block_size=1, sampling_eps_min=1.0, sampling_eps_max=1.0, ignore_bos=False)
    with torch.no_grad():
        out = model(labels=random_clean(2, 16, 13), generator=torch.Generator().manual_seed(0))
    assert (out.timesteps == 1).all() and (out.noisy_input_ids == 12).all()


def test_ignore_bos_keeps_position_zero_clean_and_unscored():
    model = tiny_bd3lm()
    x0 = random_clean(4, 16, 13)
    with torch.no_grad():
        out = model(input_ids=torch.full_like(x0, 12), labels=x0, timesteps=1.0)
    assert (out.noisy_input_ids[:, 0] == x0[:, 0]).all() and (out.loss_per_token[:, 0] == 0).all()
    assert torch.isclose(out.loss, out.loss_per_token.sum() / (4 * 15))


# --- padding ----------------------------------------------------------------------------------
def test_padding_is_not_attended_nor_scored():
    model = tiny_bd3lm(block_size=4, length=16)
    x0 = random_clean(2, 12, 13)
    x_t = mask_at_random(x0, 12, 0.5)
    pad = torch.zeros(2, 4, dtype=torch.long)
    labels = torch.cat([x0, pad - 100], 1)
    attention = torch.cat([torch.ones(2, 12), torch.zeros(2, 4)], 1)
    t = torch.tensor([[0.3, 0.6, 0.9, 0.5]] * 2)
    with torch.no_grad():
        padded = model(input_ids=torch.cat([x_t, pad + 7], 1), labels=labels, attention_mask=attention, timesteps=t)
        alone = model(input_ids=x_t, labels=x0, timesteps=t[:, :3])
    assert torch.isfinite(padded.logits).all() and (padded.loss_per_token[:, 12:] == 0).all()
    torch.testing.assert_close(padded.logits[:, :12], alone.logits, **TOL)
    torch.testing.assert_close(padded.loss, alone.loss, **TOL)


def test_left_padding_gives_finite_gradients():
    model = tiny_bd3lm(block_size=4, length=8).train()
    x0 = random_clean(2, 8, 13)
    attention = torch.ones(2, 8)
    attention[0, :4] = 0  # a whole padded block: its rows only see themselves
    labels = x0.masked_fill(attention == 0, -100)
    out = model(input_ids=x0, labels=labels, attention_mask=attention, generator=torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(
        torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None
    )


# --- FlexAttention ----------------------------------------------------------------------------
@pytest.mark.skipif(not FLEX_ATTENTION_AVAILABLE, reason="this torch has no torch.nn.attention.flex_attention")
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_attention_gives_the_sdpa_outputs():
    # on CPU FlexAttention runs eagerly for inference (torch has no CPU flex backward); the tile of
    # 128 > 2L means every tile is partial, the case of bd3lms issue #23
    sdpa = tiny_bd3lm()
    flex = tiny_bd3lm(attn_backend="flex")
    flex.load_state_dict(sdpa.state_dict())
    x0 = random_clean(3, 16, 13)
    x_t = mask_at_random(x0, 12, 0.5)
    attention = torch.ones(3, 16)
    attention[2, 10:] = 0
    with torch.no_grad():
        mask = flex._training_mask(16, None, torch.device("cpu"), 3)
        assert type(mask).__name__ == "BlockMask"
        losses = []
        for am in (None, attention):
            a = sdpa(input_ids=x_t, labels=x0, attention_mask=am, timesteps=0.6)
            b = flex(input_ids=x_t, labels=x0, attention_mask=am, timesteps=0.6)
            torch.testing.assert_close(a.logits[a.logits > -1e5], b.logits[a.logits > -1e5], **TOL)
            torch.testing.assert_close(a.loss, b.loss, **TOL)
            losses.append(a.loss)
    # training on CPU falls back to SDPA (same loss, gradients exist)
    loss = flex.train()(input_ids=x_t, labels=x0, timesteps=0.6).loss
    loss.backward()
    torch.testing.assert_close(loss.detach(), losses[0], **TOL)


# --- likelihood -------------------------------------------------------------------------------
def test_negative_elbo_of_the_initial_model_has_its_closed_form():
    # zero head: p_theta is uniform over V - 1 tokens; a token is masked with probability t and then
    # costs (1/t) log(V - 1): log(V - 1) per scored token (position 0 is BOS, unscored)
    model = tiny_bd3lm(randomize=False)
    x = random_clean(64, 16, 13)
    nelbo = model.negative_elbo(x, num_samples=4, generator=torch.Generator().manual_seed(2))
    expected = 15 * math.log(12)
    stderr = nelbo.std().item() / math.sqrt(len(nelbo))
    assert abs(nelbo.mean().item() - expected) < 4 * stderr + 1e-6


def test_negative_elbo_integrates_the_unclipped_range():
    model = tiny_bd3lm(sampling_eps_min=0.5, sampling_eps_max=0.9)
    seen = []
    model.register_forward_hook(lambda mod, args, kwargs, out: seen.append(out.timesteps), with_kwargs=True)
    x = random_clean(8, 16, 13)
    nelbo = model.negative_elbo(x, num_samples=8, generator=torch.Generator().manual_seed(0))
    t = torch.cat([s.flatten() for s in seen])
    assert torch.isfinite(nelbo).all() and t.min() < 0.2 and t.max() > 0.9  # [1e-3, 1], not [0.5, 0.9]
    bound = perplexity_bound(model, x, batch_size=4, num_samples=2, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(bound.perplexity) and bound.num_tokens == 8 * 16


# --- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("block_size", [0, -4, 32, 3, 2.0])
def test_bad_block_size(block_size):
    with pytest.raises(ValueError, match="block_size"):
        tiny_config(block_size=block_size, length=16)


@pytest.mark.parametrize("beta,omega", [(0.0, 1.0), (-0.1, 0.5), (0.5, 1.2), (0.8, 0.3)])
def test_bad_clipped_range(beta, omega):
    with pytest.raises(ValueError, match="sampling_eps"):
        tiny_config(sampling_eps_min=beta, sampling_eps_max=omega)


def test_length_not_a_multiple_of_the_block_size():
    model = tiny_bd3lm(block_size=4, length=16)
    with pytest.raises(ValueError, match="multiple of block_size.*pad_to_multiple_of=4"):
        model(labels=random_clean(2, 10, 13))


def test_bad_timesteps_and_arguments():
    model = tiny_bd3lm()
    x0 = random_clean(2, 16, 13)
    with pytest.raises(ValueError, match="timesteps must be"):
        model(input_ids=x0, labels=x0, timesteps=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        model(input_ids=x0, labels=x0, timesteps=0.0)
    with pytest.raises(ValueError, match="sampling mode"):
        model(input_ids=x0, labels=x0, position_ids=torch.arange(16))
    with pytest.raises(ValueError, match="attn_backend"):
        tiny_config(attn_backend="flash")


def test_official_config_keys_are_checked():
    official = dict(
        model_type="bd3lm",
        block_size=4,
        cross_attn=True,
        adaln=True,
        causal=False,
        attn_backend="sdpa",
        auto_map={"AutoConfig": "x"},
        return_dict=False,
        architectures=["BD3LM"],
        hidden_dim=64,
    )
    mapped = official_bd3lm_config_to_dict(official)
    assert "auto_map" not in mapped and "cross_attn" not in mapped and mapped["hidden_dim"] == 64
    assert BD3LMConfig.from_dict({**official, "model_length": 16, "n_heads": 4, "n_blocks": 2}).hidden_size == 64
    for key, value in (("cross_attn", False), ("adaln", False), ("causal", True)):
        with pytest.raises(ValueError, match=key):
            official_bd3lm_config_to_dict({**official, key: value})


def test_bd3lm_is_registered_and_its_configs_load():
    from pathlib import Path

    from transformers import AutoConfig, AutoModel

    root = Path(__file__).resolve().parents[3] / "modeling_configs"
    for block in (4, 8, 16):
        config = AutoConfig.from_pretrained(root / f"bd3lm-owt-block_size{block}")
        assert isinstance(config, BD3LMConfig) and config.block_size == block
        assert (config.hidden_size, config.num_hidden_layers, config.vocab_size, config.max_position_embeddings) == (
            768,
            12,
            50258,
            1024,
        )
    tiny = tiny_config()
    assert isinstance(AutoModel.from_config(tiny), BD3LMForDiffusionLM)
