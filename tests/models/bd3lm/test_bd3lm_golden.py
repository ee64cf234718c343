"""BD3-LM against the official code (golden README section 7): checkpoint loading, the training
forward over [x_t ; x_0], the NELBO, no-cache and KV-cache decoding (with the step past the model
length), and one sampler step. Tolerances are those of README section 8."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForMaskedLM

from hf_ddlm import BD3LMConfig, BD3LMForDiffusionLM
from hf_ddlm.backbones.attention import block_causal_mask, block_diff_mask, materialize_mask
from hf_ddlm.generation.cache import BlockKVCache
from hf_ddlm.samplers import get_sampler
from hf_ddlm.testing import load_golden

CASE = ("bd3lm", "block4_len16")
LOGITS = dict(rtol=1e-4, atol=1e-5)
LOSS = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def golden():
    folder, inputs, expected, case = load_golden(*CASE)
    model = BD3LMForDiffusionLM.from_pretrained(folder).eval()
    return folder, inputs, expected, case, model


def raw_logits(model, ids, mask=None, positions=None, cache=None):
    """The backbone's logits (before SUBS), as the golden files store them."""
    with torch.no_grad():
        sigma = torch.zeros(ids.shape[0])
        if cache is not None:
            n = ids.shape[1]
            out = model.backbone(
                ids,
                sigma,
                cache.attention_mask(n, ids.shape[0], "cpu"),
                cache.position_ids(n, "cpu"),
                kv_caches=cache.layers,
            )
            cache.close(n)
            return out
        return model.backbone(ids, sigma, mask, positions)


def finite(reference):
    return reference > -1e5  # SUBS sentinels (-1e6) are compared only through their positions


def test_official_checkpoint_loads_strictly_with_its_config(golden):
    folder, _, _, case, model = golden
    official = json.loads((folder / "config.json").read_text())
    config = model.config
    assert isinstance(config, BD3LMConfig)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (
        official["hidden_dim"],
        official["n_blocks"],
        official["n_heads"],
    )
    assert (config.max_position_embeddings, config.block_size, config.vocab_size) == (
        official["model_length"],
        official["block_size"],
        official["vocab_size"],
    )
    assert config.mask_token_id == case["mask_index"]
    # the clipped range comes from the sampling_eps_* buffers
    assert (config.sampling_eps_min, config.sampling_eps_max) == (0.001, 0.999)
    assert not hasattr(config, "auto_map") or not config.auto_map
    # the Auto classes resolve the official layout to our classes
    assert isinstance(AutoConfig.from_pretrained(folder), BD3LMConfig)
    assert isinstance(AutoModelForMaskedLM.from_pretrained(folder), BD3LMForDiffusionLM)


def test_masks_equal_the_official_ones(golden):
    _, _, expected, _, _ = golden
    assert torch.equal(materialize_mask(block_diff_mask(4, 16), 32, 32)[0, 0], expected["attn_mask"])
    assert torch.equal(materialize_mask(block_causal_mask(4), 12, 12)[0, 0], expected["sample_mode_mask_a"])


def test_training_forward_subs_and_nelbo(golden):
    _, inputs, expected, _, model = golden
    x_t, x0 = inputs["x_t"], inputs["x0"]
    with torch.no_grad():
        out = model(input_ids=x_t, labels=x0, timesteps=inputs["t_per_block"], attention_mask=inputs["attention_mask"])
    positions = torch.arange(16).repeat(2)
    raw = raw_logits(model, torch.cat([x_t, x0], 1), materialize_mask(block_diff_mask(4, 16), 32, 32), positions)[
        :, :16
    ]
    torch.testing.assert_close(raw, expected["train_logits"], **LOGITS)
    ref = expected["train_subs_log_probs"]
    assert torch.equal(finite(out.logits), finite(ref))
    torch.testing.assert_close(out.logits[finite(ref)], ref[finite(ref)], **LOGITS)
    torch.testing.assert_close(out.timesteps, inputs["t"])
    # per-token t given directly is the same
    with torch.no_grad():
        per_token = model(input_ids=x_t, labels=x0, timesteps=inputs["t"], attention_mask=inputs["attention_mask"])
    torch.testing.assert_close(per_token.loss_per_token, out.loss_per_token)
    torch.testing.assert_close(out.loss_per_token, expected["nelbo_per_token_masked"], **LOSS)
    torch.testing.assert_close(out.loss, expected["nelbo_token_mean"], **LOSS)
    # the loss counts the positions of the official eval token mask (ignore_bos drops column 0)
    count = (out.loss_per_token.sum() / out.loss).round()
    assert count == expected["token_mask"].sum()


def test_training_forward_draws_the_official_noise_law(golden):
    # with the stored t, the move chance is t itself and position 0 (BOS) is never masked
    _, inputs, expected, _, model = golden
    torch.testing.assert_close(expected["train_move_chance"], inputs["t"])
    torch.testing.assert_close(expected["train_loss_scale"], -1 / inputs["t"])
    with torch.no_grad():
        out = model(labels=inputs["x0"], generator=torch.Generator().manual_seed(0))
    assert (out.noisy_input_ids[:, 0] == inputs["x0"][:, 0]).all()


def test_no_cache_decoding(golden):
    _, inputs, expected, _, model = golden
    prefix = inputs["decode_prefix"]
    for block, key in ((inputs["decode_block_a"], "nocache_logits_a"), (inputs["decode_block_b"], "nocache_logits_b")):
        ids = torch.cat([prefix, block], 1)
        raw = raw_logits(model, ids, materialize_mask(block_causal_mask(4), 12, 12))
        torch.testing.assert_close(raw, expected[key], **LOGITS)
    ids = torch.cat([prefix, inputs["decode_block_clean"], inputs["decode_next_block"]], 1)
    torch.testing.assert_close(
        raw_logits(model, ids, materialize_mask(block_causal_mask(4), 16, 16)),
        expected["nocache_logits_next"],
        **LOGITS,
    )
    # the model's sampling-mode forward is that path plus SUBS
    with torch.no_grad():
        out = model(input_ids=torch.cat([prefix, inputs["decode_block_a"]], 1))
    ref = expected["kv_subs_log_probs_a"]
    torch.testing.assert_close(out.logits[:, -4:][finite(ref)], ref[finite(ref)], **LOGITS)


def test_kv_cache_decoding_including_the_slide_past_the_model_length(golden):
    _, inputs, expected, case, model = golden
    cache = BlockKVCache.for_model(model)
    prefix, x0 = inputs["decode_prefix"], inputs["x0"]
    committed = torch.stack(
        [raw_logits(model, prefix[:, 4 * k : 4 * k + 4], cache=cache.commit()) for k in range(2)], 1
    )
    torch.testing.assert_close(committed, expected["kv_commit_logits_prefix"], **LOGITS)
    torch.testing.assert_close(
        raw_logits(model, inputs["decode_block_a"], cache=cache.read()), expected["kv_logits_a"], **LOGITS
    )
    torch.testing.assert_close(
        raw_logits(model, inputs["decode_block_b"], cache=cache.read()), expected["kv_logits_b"], **LOGITS
    )
    current = raw_logits(model, inputs["decode_block_clean"], cache=cache.commit())
    torch.testing.assert_close(current, expected["kv_commit_logits_current"], **LOGITS)
    assert cache.length == case["cache_idx_after_commit_current"]
    torch.testing.assert_close(
        raw_logits(model, inputs["decode_next_block"], cache=cache.read()), expected["kv_logits_next"], **LOGITS
    )
    raw_logits(model, x0[:, 12:16], cache=cache.commit())  # fills the cache: it slides by one block
    assert cache.length == case["cache_idx_before_slide_decode"]
    torch.testing.assert_close(
        raw_logits(model, inputs["decode_next_block"], cache=cache.read()), expected["kv_logits_slide"], **LOGITS
    )


def test_kv_cache_through_the_model_forward_and_prompt_prefill(golden):
    # the same numbers through model(..., cache=...), with the prefix encoded in one forward
    _, inputs, expected, _, model = golden
    cache = BlockKVCache.for_model(model)
    with torch.no_grad():
        model(input_ids=inputs["decode_prefix"], cache=cache.commit())
        out = model(input_ids=inputs["decode_block_a"], cache=cache.read())
    ref = expected["kv_subs_log_probs_a"]
    assert torch.equal(finite(out.logits), finite(ref))
    torch.testing.assert_close(out.logits[finite(ref)], ref[finite(ref)], **LOGITS)


def test_one_ancestral_sampler_step(golden):
    _, inputs, expected, _, model = golden
    cache = BlockKVCache.for_model(model)
    block = inputs["decode_block_a"]
    with torch.no_grad():
        model(input_ids=inputs["decode_prefix"], cache=cache.commit())
        log_probs = model(input_ids=block, cache=cache.read()).logits
    ref = expected["ddpm_subs_log_probs"]
    torch.testing.assert_close(log_probs[finite(ref)], ref[finite(ref)], **LOGITS)
    sampler = get_sampler("block_ancestral", model.graph, model.schedule)
    t = inputs["sampler_t"][:, 0]
    s = t - inputs["sampler_dt"]
    out = sampler.step(log_probs, block, t, s, uniform_noise=expected["ddpm_uniform_noise"])
    assert out.probs.dtype == torch.float64
    torch.testing.assert_close(out.probs, expected["ddpm_q_xs"], rtol=1e-4, atol=1e-6)
    assert torch.equal(torch.cat([inputs["decode_prefix"], out.prev_sample], 1), expected["ddpm_x_new"])


def test_round_trip_keeps_weights_range_and_outputs(golden, tmp_path):
    _, inputs, expected, _, model = golden
    model.config.sampling_eps_min, model.config.sampling_eps_max = 0.3, 0.8
    try:
        model.save_pretrained(tmp_path)
        again = BD3LMForDiffusionLM.from_pretrained(tmp_path).eval()
    finally:
        model.config.sampling_eps_min, model.config.sampling_eps_max = 0.001, 0.999
    assert (again.config.sampling_eps_min, again.config.sampling_eps_max) == (0.3, 0.8)
    assert float(again.sampling_eps_min) == pytest.approx(0.3) and float(again.sampling_eps_max) == pytest.approx(0.8)
    with torch.no_grad():
        a = model(input_ids=inputs["x_t"], labels=inputs["x0"], timesteps=inputs["t_per_block"]).logits
        b = again(input_ids=inputs["x_t"], labels=inputs["x0"], timesteps=inputs["t_per_block"]).logits
    assert torch.equal(a, b)


def test_converted_checkpoint_is_our_format_with_the_same_outputs(golden, tmp_path):
    from hf_ddlm.models.bd3lm.convert_bd3lm_checkpoint import convert_bd3lm_checkpoint

    folder, inputs, _, _, model = golden
    convert_bd3lm_checkpoint(folder, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "bd3lm" and "cross_attn" not in saved
    assert saved["auto_map"]["AutoModel"] == "modeling_bd3lm.BD3LMForDiffusionLM"  # ours, not the official remote code
    assert (tmp_path / "modeling_bd3lm.py").is_file()
    assert saved["hidden_size"] == 64 and saved["block_size"] == 4 and saved["sampling_eps_max"] == 0.999
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    assert generation["sampler"] == "first_hitting" and generation["sampler_kwargs"] == {"nucleus_p": 0.9}
    again = BD3LMForDiffusionLM.from_pretrained(tmp_path).eval()
    assert again.generation_config.sampler == "first_hitting"
    with torch.no_grad():
        a = model(input_ids=inputs["x_t"], labels=inputs["x0"], timesteps=inputs["t_per_block"]).logits
        b = again(input_ids=inputs["x_t"], labels=inputs["x0"], timesteps=inputs["t_per_block"]).logits
    assert torch.equal(a, b)
