"""The transformers model contract on every method (issue 10), beyond what ``ModelTesterMixin``
checks: hidden states and attentions, the attention implementations (eager = sdpa, BD3-LM's block
masks and KV cache included), resizing the vocabulary with the mask token kept last, loading from a
state dict alone, ``_init_weights`` covering every parameter, the base model, ``inputs_embeds``."""

from __future__ import annotations

import pytest
import torch

from hf_ddlm.backbones.attention import FLEX_ATTENTION_AVAILABLE, BlockMask
from hf_ddlm.testing import MODELS, tiny_model

METHODS = sorted(MODELS)
B, L = 2, 8


def ids(model, batch_size=B, length=L, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size - 1, (batch_size, length), generator=g)


def noisy(model, x):
    """x with some positions replaced by the mask (absorbing) so every path of SUBS matters."""
    if model.graph.mask_token_id is None:
        return x
    x = x.clone()
    x[:, ::3] = model.graph.mask_token_id
    return x


def t_half():
    return torch.full((B,), 0.5)


# --- 1. hidden states and attentions -----------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_output_hidden_states_and_attentions(method):
    model = tiny_model(method, num_hidden_layers=2, attn_implementation="eager")
    x = ids(model)
    out = model(input_ids=x, timesteps=t_half(), output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 3 and all(h.shape == (B, L, 32) for h in out.hidden_states)
    assert len(out.attentions) == 2 and all(a.shape == (B, 2, L, L) for a in out.attentions)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(B, 2, L))
    plain = model(input_ids=x, timesteps=t_half())
    assert plain.hidden_states is None and plain.attentions is None
    assert torch.equal(plain.logits, out.logits)


# --- 2. attention implementations ------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_attn_implementation_is_honoured_and_eager_equals_sdpa(method):
    model = tiny_model(method, num_hidden_layers=2)
    assert model.config._attn_implementation == "sdpa"  # the default path (the golden tests' one)
    x = noisy(model, ids(model))
    mask = torch.ones_like(x)
    mask[1, -3:] = 0
    sdpa = model(input_ids=x, attention_mask=mask, timesteps=t_half()).logits
    labels = ids(model, seed=1)
    sdpa_loss = model(input_ids=labels, labels=labels, generator=torch.Generator().manual_seed(0)).loss
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    eager = model(input_ids=x, attention_mask=mask, timesteps=t_half()).logits
    eager_loss = model(input_ids=labels, labels=labels, generator=torch.Generator().manual_seed(0)).loss
    real = mask.bool()
    finite = torch.isfinite(sdpa)
    assert torch.equal(finite, torch.isfinite(eager))
    torch.testing.assert_close(eager[real][finite[real]], sdpa[real][finite[real]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eager_loss, sdpa_loss, rtol=1e-5, atol=1e-5)
    # the argument of from_pretrained / from_config reaches the config
    again = type(model)._from_config(model.config, attn_implementation="eager")
    assert again.config._attn_implementation == "eager"


def test_attention_goes_through_the_interface():
    """A function registered in transformers' AttentionInterface is what the blocks call."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return sdpa_attention_forward(*args, **kwargs)

    AttentionInterface.register("hf_ddlm_counting", counting)
    model = tiny_model("mdlm", num_hidden_layers=2)
    x = ids(model)
    expected = model(input_ids=x, timesteps=t_half()).logits
    model.set_attn_implementation("hf_ddlm_counting")
    assert torch.equal(model(input_ids=x, timesteps=t_half()).logits, expected)
    assert len(calls) == 2


def test_bd3lm_block_masks_and_kv_cache_eager_equals_sdpa():
    from hf_ddlm.generation.cache import BlockKVCache

    model = tiny_model("bd3lm", num_hidden_layers=2)
    x = ids(model)
    mask = torch.ones_like(x)
    mask[1, -2:] = 0
    results = {}
    for impl in ("sdpa", "eager"):
        model.set_attn_implementation(impl)
        train = model(input_ids=x, labels=x, attention_mask=mask, generator=torch.Generator().manual_seed(0))
        block = noisy(model, x)
        causal = model(input_ids=block, attention_mask=mask).logits  # block-causal sampling mode
        cache = BlockKVCache.for_model(model)
        model(input_ids=x[:, :4], cache=cache.commit())
        cached = model(input_ids=block[:, 4:], cache=cache.read()).logits
        results[impl] = (train.loss, train.logits, causal, cached)
    for a, b in zip(results["sdpa"], results["eager"]):
        finite = torch.isfinite(a)
        assert torch.equal(finite, torch.isfinite(b))
        torch.testing.assert_close(a[finite], b[finite], rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not FLEX_ATTENTION_AVAILABLE, reason="FlexAttention needs torch >= 2.5")
def test_bd3lm_flex_attention_and_attn_backend_flex_agree_with_sdpa():
    """``attn_implementation="flex_attention"`` and the official config's ``attn_backend="flex"``
    both run the training block mask as a FlexAttention BlockMask; the loss is SDPA's."""
    x = ids(tiny_model("bd3lm"))
    losses = []
    for overrides, impl in (({}, "sdpa"), ({}, "flex_attention"), ({"attn_backend": "flex"}, None)):
        model = tiny_model("bd3lm", **overrides)
        if impl is not None:
            model.set_attn_implementation(impl)
        with torch.no_grad():  # FlexAttention runs on CPU for inference only
            losses.append(model(input_ids=x, labels=x, generator=torch.Generator().manual_seed(0)).loss)
    if hasattr(model, "_masks"):
        assert any(isinstance(m, BlockMask) for m in model._masks.values())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(losses[2], losses[0], rtol=1e-5, atol=1e-5)


# --- 3. resizing the vocabulary ----------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("delta", [3, -2])
def test_resize_token_embeddings_keeps_rows_and_the_mask_last(method, delta, tmp_path):
    model = tiny_model(method)
    old_v = model.config.vocab_size
    emb = model.get_input_embeddings()
    assert emb.weight.shape == (old_v, 32)
    old_in = emb.weight.detach().clone()
    old_out = model.get_output_embeddings().weight.detach().clone()
    old_bias = model.get_output_embeddings().bias.detach().clone()
    absorbing = model.graph.mask_token_id is not None
    new_v = old_v + delta
    model.resize_token_embeddings(new_v)
    assert model.config.vocab_size == new_v and model.graph.vocab_size == new_v
    new_in = model.get_input_embeddings().weight
    new_out = model.get_output_embeddings().weight
    assert new_in.shape == (new_v, 32) and new_out.shape == (new_v, 32)
    assert model.get_output_embeddings().bias.shape == (new_v,)
    keep = min(old_v, new_v) - (1 if absorbing else 0)  # ordinary tokens that survive
    assert torch.equal(new_in[:keep], old_in[:keep]) and torch.equal(new_out[:keep], old_out[:keep])
    assert torch.equal(model.get_output_embeddings().bias[:keep], old_bias[:keep])
    if absorbing:
        assert model.config.mask_token_id == new_v - 1 == model.graph.mask_token_id
        assert torch.equal(new_in[-1], old_in[-1]) and torch.equal(new_out[-1], old_out[-1])
    assert torch.isfinite(new_in).all() and torch.isfinite(new_out).all()
    x = ids(model)
    out = model(input_ids=noisy(model, x), timesteps=t_half())
    assert out.logits.shape == (B, L, new_v)
    model(input_ids=x, labels=x).loss.backward()
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    assert loaded.config.vocab_size == new_v and loaded.config.mask_token_id == model.config.mask_token_id
    assert torch.equal(loaded.get_input_embeddings().weight, new_in)


@pytest.mark.parametrize("method", METHODS)
def test_set_input_embeddings(method):
    from hf_ddlm.backbones.dit import EmbeddingLayer

    model = tiny_model(method)
    new = EmbeddingLayer(32, model.config.vocab_size)
    model.set_input_embeddings(new)
    assert model.get_input_embeddings() is new and model.backbone.vocab_embed is new
    assert "backbone.vocab_embed.embedding" in model.state_dict()  # the official key


# --- 4. from_pretrained(None, config=..., state_dict=...) --------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_from_pretrained_none_with_state_dict(method):
    model = tiny_model(method)
    loaded = type(model).from_pretrained(None, config=model.config, state_dict=model.state_dict())
    x = ids(model)
    assert torch.equal(loaded(input_ids=x, timesteps=t_half()).logits, model(input_ids=x, timesteps=t_half()).logits)
    assert loaded.generation_config.sampler == model.generation_config.sampler


# --- 5. _init_weights initialises every parameter ------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_empty_state_dict_gives_the_fresh_init(method):
    fresh = tiny_model(method, randomize=False)
    loaded = type(fresh).from_pretrained(None, config=fresh.config, state_dict={}, strict=False)
    fresh_state = dict(fresh.state_dict())
    for name, tensor in loaded.state_dict().items():
        ref = fresh_state[name]
        assert torch.isfinite(tensor).all(), name
        assert tensor.abs().max() <= max(1.0, ref.abs().max().item() * 1.5 + 1e-6), name
        if torch.all(ref == ref.flatten()[0]):  # a constant init (zeros, ones, buffers): exactly it
            assert torch.equal(tensor, ref), name
        else:  # a random init: the same distribution
            assert abs(tensor.std().item() - ref.std().item()) < 0.35 * ref.std().item(), name


@pytest.mark.parametrize("method", METHODS)
def test_missing_key_under_strict_false_is_initialised(method, tmp_path):
    from safetensors.torch import load_file, save_file

    model = tiny_model(method, randomize=False)
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    dropped = [k for k in state if k.endswith("mlp.0.weight") or k.endswith("attn_qkv.weight")]
    save_file({k: v for k, v in state.items() if k not in dropped}, tmp_path / "model.safetensors", {"format": "pt"})
    loaded = type(model).from_pretrained(tmp_path, strict=False)
    for name, tensor in loaded.state_dict().items():
        assert torch.isfinite(tensor).all() and tensor.abs().max() < 10, name


# --- 6. the base model ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_base_model_is_the_backbone_and_loads_alone(method, tmp_path):
    model = tiny_model(method)
    assert model.base_model is model.backbone
    # the backbone's own weights (no "backbone." prefix) load into the full model
    state = {k: v for k, v in model.backbone.state_dict().items()}
    from safetensors.torch import save_file

    model.config.save_pretrained(tmp_path)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors", {"format": "pt"})
    loaded = type(model).from_pretrained(tmp_path, strict=False)
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[k], v), k


# --- 7. inputs_embeds -----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_inputs_embeds_matches_input_ids(method):
    model = tiny_model(method)
    x = noisy(model, ids(model))
    by_ids = model(input_ids=x, timesteps=t_half()).logits
    embeds = model.get_input_embeddings()(x)
    by_embeds = model(input_ids=x, inputs_embeds=embeds, timesteps=t_half()).logits
    assert torch.equal(by_ids, by_embeds)
    # a perturbed embedding changes the output: the embeddings are what the network reads
    assert not torch.equal(model(input_ids=x, inputs_embeds=embeds * 2, timesteps=t_half()).logits, by_ids)


def test_lora_wraps_the_embedding_and_merges_to_the_official_key():
    """The embedding reads as an nn.Embedding, so PEFT's LoRA wraps it; merging restores the
    official parameter name."""
    from peft import LoraConfig, get_peft_model

    model = tiny_model("mdlm")
    x = noisy(model, ids(model))
    reference = model(input_ids=x, timesteps=t_half()).logits
    peft_model = get_peft_model(model, LoraConfig(target_modules=["vocab_embed"], r=2))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_()
    adapted = peft_model(input_ids=x, timesteps=t_half()).logits
    assert not torch.equal(adapted, reference)
    merged = peft_model.merge_and_unload()
    torch.testing.assert_close(merged(input_ids=x, timesteps=t_half()).logits, adapted, rtol=1e-5, atol=1e-5)
    assert "backbone.vocab_embed.embedding" in merged.state_dict()


@pytest.mark.parametrize("method", ["sedd", "mdlm", "d3pm", "ctmc"])
def test_inputs_embeds_with_labels_needs_a_given_x_t(method):
    model = tiny_model(method)
    x0 = ids(model)
    x_t = noisy(model, x0)
    embeds = model.get_input_embeddings()(x_t)
    given = model(input_ids=x_t, timesteps=t_half(), labels=x0)
    by_embeds = model(input_ids=x_t, inputs_embeds=embeds, timesteps=t_half(), labels=x0)
    assert torch.equal(given.loss, by_embeds.loss)
    with pytest.raises(ValueError, match="inputs_embeds with labels needs timesteps"):
        model(input_ids=x0, inputs_embeds=model.get_input_embeddings()(x0), labels=x0)


@pytest.mark.parametrize("method", ["bd3lm", "csm"])
def test_inputs_embeds_in_training_is_refused_where_the_network_input_is_drawn(method):
    model = tiny_model(method)
    x0 = ids(model)
    with pytest.raises(ValueError, match="inputs_embeds"):
        model(input_ids=x0, inputs_embeds=model.get_input_embeddings()(x0), labels=x0, timesteps=t_half())
