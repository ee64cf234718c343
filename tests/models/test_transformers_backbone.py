"""Every method on a transformers base model (``backbone_config``): tiny Llama, Qwen2 and GPT-2."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, GemmaConfig, GPT2Config, LlamaConfig, Qwen2Config, T5Config

from hf_ddlm import (
    BD3LMConfig,
    BD3LMForDiffusionLM,
    CSMForDiffusionLM,
    CTMCConfig,
    CTMCForDiffusionLM,
    D3PMConfig,
    D3PMForDiffusionLM,
    MDLMConfig,
    MDLMForDiffusionLM,
    SEDDConfig,
    SEDDForDiffusionLM,
)
from hf_ddlm.backbones import DiT, TransformersBackbone, block_causal_mask, materialize_mask
from hf_ddlm.generation.utils import applicable_samplers

V = 23  # the mask is the last id, 22


def backbone_config(kind: str, vocab_size: int = V):
    # one tiny decoder shape for every model type (grouped-query attention where it has it)
    decoder = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    if kind == "llama":
        return LlamaConfig(**decoder, max_position_embeddings=64)
    if kind == "gemma":
        return GemmaConfig(**decoder, head_dim=8)
    if kind == "qwen2":
        return Qwen2Config(**decoder, max_position_embeddings=64)
    return GPT2Config(
        vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0
    )


KINDS = ["llama", "qwen2", "gpt2"]


def build(model_class=MDLMForDiffusionLM, kind="llama", seed=0, **kwargs):
    torch.manual_seed(seed)
    config = model_class.config_class(backbone_config=backbone_config(kind), max_position_embeddings=16, **kwargs)
    return model_class(config).eval()


def ids(batch=2, length=16, seed=0):
    return torch.randint(0, V - 1, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", [*KINDS, "gemma"])
def test_output_at_i_depends_on_tokens_after_i(kind):
    """The decoder runs bidirectionally: changing token 6 changes the logits at position 2 (a
    causal decoder would leave positions < 6 untouched)."""
    model = build(kind=kind)
    x = ids(length=10)
    y = x.clone()
    y[:, 6] = (y[:, 6] + 1) % (V - 1)
    with torch.no_grad():
        a, b = model.backbone(x, None), model.backbone(y, None)
    assert a.shape == (2, 10, V)
    assert (a[:, :6] - b[:, :6]).abs().amax() > 1e-4


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_block_mask_is_the_full_attention_mask(kind, implementation):
    """A boolean [1, 1, L, L] pattern (BD3-LM's block-causal mask) replaces the model's own: block 0
    does not see block 1, block 1 sees block 0; eager (additive mask) equals SDPA (boolean)."""
    model = build(kind=kind)
    x = ids(length=8)
    y = x.clone()
    y[:, 5] = (y[:, 5] + 1) % (V - 1)
    mask = materialize_mask(block_causal_mask(4), 8, 8, x.device)
    with torch.no_grad():
        sdpa = model.backbone(x, None, mask)
        model.config._attn_implementation = implementation
        a, b = model.backbone(x, None, mask), model.backbone(y, None, mask)
    torch.testing.assert_close(a, sdpa, rtol=1e-5, atol=1e-5)
    assert torch.equal(a[:, :4], b[:, :4])
    y2 = x.clone()
    y2[:, 1] = (y2[:, 1] + 1) % (V - 1)
    with torch.no_grad():
        c = model.backbone(y2, None, mask)
    assert (a[:, 4:] - c[:, 4:]).abs().amax() > 1e-4


@pytest.mark.parametrize("kind", KINDS)
def test_padding_is_never_attended_to(kind):
    model = build(kind=kind)
    x = ids(length=8)
    attention_mask = torch.ones_like(x)
    attention_mask[:, 6:] = 0
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 3) % (V - 1)
    with torch.no_grad():
        a, b = model.backbone(x, None, attention_mask), model.backbone(y, None, attention_mask)
    assert torch.equal(a[:, :6], b[:, :6])


def test_shifted_prediction_reads_the_previous_state():
    """logits = head(cat([h[:, :1], h[:, :-1]])) (DiffuGPT / Dream), also through output_positions."""
    model = build(shifted_prediction=True)
    x = ids(length=8)
    with torch.no_grad():
        h = model.backbone.model(input_ids=x).last_hidden_state
        shifted = model.backbone(x, None)
        rows = torch.tensor([[0, 3], [7, 1]])
        picked = model.backbone(x, None, output_positions=rows)
    torch.testing.assert_close(shifted, model.backbone.lm_head(torch.cat([h[:, :1], h[:, :-1]], 1)))
    torch.testing.assert_close(picked, shifted.gather(1, rows[..., None].expand(-1, -1, V)))


def test_state_dict_keys_init_and_tying():
    llama, gpt2 = build(kind="llama"), build(kind="gpt2")
    keys = set(llama.state_dict())
    assert "backbone.lm_head.weight" in keys and all(
        k.startswith(("backbone.model.", "backbone.lm_head")) for k in keys
    )
    assert isinstance(llama.backbone, TransformersBackbone) and isinstance(build_dit().backbone, DiT)
    # the backbone's own init (normal, initializer_range 0.02), not the DiT's zero head
    for weight in (llama.backbone.lm_head.weight, llama.backbone.model.layers[0].self_attn.q_proj.weight):
        assert 0.015 < weight.std().item() < 0.025
    # GPT-2 ties its head to the input embeddings (tie_word_embeddings); Llama's default does not
    assert gpt2.backbone.lm_head.weight is gpt2.backbone.model.wte.weight
    assert llama.backbone.lm_head.weight is not llama.backbone.model.embed_tokens.weight


def build_dit():
    return MDLMForDiffusionLM(MDLMConfig(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=2))


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_save_and_load_round_trip(kind, tmp_path):
    model = build(kind=kind, shifted_prediction=True)
    model.save_pretrained(tmp_path)
    loaded = MDLMForDiffusionLM.from_pretrained(tmp_path).eval()
    assert type(loaded.config.backbone_config) is type(model.config.backbone_config)
    assert loaded.config.shifted_prediction and loaded.backbone.shifted_prediction
    x = ids()
    with torch.no_grad():
        assert torch.equal(model(input_ids=x, timesteps=0.5).logits, loaded(input_ids=x, timesteps=0.5).logits)
    if kind == "gpt2":
        assert loaded.backbone.lm_head.weight is loaded.backbone.model.wte.weight


METHODS = [
    (MDLMForDiffusionLM, {}),
    (BD3LMForDiffusionLM, {"block_size": 4}),
    (SEDDForDiffusionLM, {"time_conditioning": False}),
    (D3PMForDiffusionLM, {"time_conditioning": False}),
    (CTMCForDiffusionLM, {"time_conditioning": False}),
]


@pytest.mark.parametrize("model_class,kwargs", METHODS, ids=lambda v: getattr(v, "__name__", ""))
def test_every_method_trains_samples_and_scores_on_it(model_class, kwargs):
    model = build(model_class, **kwargs).train()
    x = ids()
    out = model(input_ids=x, labels=x)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("backbone.model.layers")]
    assert grads and all(g is not None for g in grads)
    model.eval()
    nelbo = model.negative_elbo(x, generator=torch.Generator().manual_seed(0))
    assert nelbo.shape == (2,) and torch.isfinite(nelbo).all()
    for sampler in applicable_samplers(model):
        generated = model.generate(
            max_length=16, num_return_sequences=2, num_inference_steps=4, sampler=sampler, seed=0
        )
        last = V - 1 if model.config.mask_token_id is not None else V  # the mask, or none (uniform)
        assert generated.shape == (2, 16) and (generated < last).all(), sampler


def test_csm_trains_and_samples_on_it():
    """CSM (no time, no likelihood bound): its loss over the neighbour rows and its samplers."""
    model = build(CSMForDiffusionLM).train()
    x = ids()
    out = model(input_ids=x, labels=x)
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.backbone.lm_head.weight.grad is not None
    model.eval()
    for sampler in applicable_samplers(model):
        generated = model.generate(
            max_length=16, num_return_sequences=2, num_inference_steps=3, sampler=sampler, seed=0
        )
        assert generated.shape == (2, 16) and (generated < V).all(), sampler


@pytest.mark.parametrize("kind", KINDS)
def test_bd3lm_block_kv_cache_is_exact(kind):
    """BD3-LM's block cache, read through the model's own cache argument, gives the tokens of the
    recompute path exactly; the cached forwards see one or two blocks, not the prefix. Past the
    model length (16) the cache cannot slide here, so decoding recomputes the prefix."""
    model = build(BD3LMForDiffusionLM, kind=kind, block_size=4)
    prompt = ids(batch=2, length=6)
    mask = torch.ones_like(prompt)
    mask[0, :2] = 0  # a left-padded row
    widths = []
    hook = model.backbone.register_forward_hook(lambda m, args, out: widths.append(args[0].shape[1]))
    kwargs = dict(input_ids=prompt, attention_mask=mask, max_new_tokens=10, num_inference_steps=4, seed=0)
    cached = model.generate(**kwargs)
    cached_widths, widths[:] = list(widths), []
    recomputed = model.generate(**kwargs, use_cache=False)
    assert torch.equal(cached, recomputed) and torch.equal(cached[:, :6], prompt)
    assert max(cached_widths[1:]) <= 8 < max(widths)  # after the prompt: a block (+ the one it commits)
    widths[:] = []
    longer = dict(max_length=24, num_return_sequences=1, num_inference_steps=2, seed=0)
    assert torch.equal(model.generate(**longer), model.generate(**longer, use_cache=False))
    assert max(widths) > 8  # past the window every call recomputes the prefix
    hook.remove()


def test_hidden_states_and_attentions_are_recorded():
    model = build()
    x = ids()
    out = model(input_ids=x, labels=x, output_hidden_states=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (2, 16, 32)
    model.config._attn_implementation = "eager"
    out = model(input_ids=x, timesteps=0.5, output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 16, 16)
    rows = out.attentions[0][0, 0].sum(-1)
    torch.testing.assert_close(rows, torch.ones_like(rows))
    assert (out.attentions[0][:, :, 0, 1:] > 0).all()  # position 0 attends to later positions


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_resize_token_embeddings_keeps_the_mask_last(kind):
    model = build(kind=kind)
    model.resize_token_embeddings(V + 5)
    assert model.config.vocab_size == model.config.backbone_config.vocab_size == V + 5
    assert model.config.mask_token_id == V + 4 and model.backbone.lm_head.weight.shape[0] == V + 5
    assert model.backbone.get_input_embeddings().weight.shape[0] == V + 5
    if kind == "gpt2":
        assert model.backbone.lm_head.weight is model.backbone.model.wte.weight
    x = ids()
    assert model(input_ids=x, labels=x).logits.shape == (2, 16, V + 5)


def test_bad_backbones_and_configs_are_refused():
    with pytest.raises(ValueError, match="encoder-decoder"):
        MDLMForDiffusionLM(MDLMConfig(backbone_config=T5Config(vocab_size=V, d_model=16, num_layers=1, num_heads=2)))
    mamba = AutoConfig.for_model("mamba", vocab_size=V, hidden_size=16, num_hidden_layers=1)
    with pytest.raises(ValueError, match="no bidirectional mode"):
        MDLMForDiffusionLM(MDLMConfig(backbone_config=mamba))
    with pytest.raises(ValueError, match="has no transformers base model"):
        MDLMForDiffusionLM(MDLMConfig(backbone_config=AutoConfig.for_model("depth_anything")))
    with pytest.raises(ValueError, match=r"vocab_size \(7\) must equal backbone_config.vocab_size"):
        MDLMConfig(backbone_config=backbone_config("llama"), vocab_size=7)
    with pytest.raises(ValueError, match="model_type of a transformers model"):
        MDLMConfig(backbone_config={"model_type": "not-a-model"})
    with pytest.raises(ValueError, match="time_conditioning must be False"):
        SEDDConfig(backbone_config=backbone_config("llama"))
    with pytest.raises(ValueError, match="shifted_prediction=True needs a backbone_config"):
        MDLMConfig(shifted_prediction=True)
    with pytest.raises(ValueError, match="not supported by BD3-LM"):
        BD3LMConfig(backbone_config=backbone_config("llama"), shifted_prediction=True, max_position_embeddings=16)


def test_config_round_trips_through_a_dict():
    config = MDLMConfig(backbone_config=backbone_config("qwen2"), shifted_prediction=True)
    again = MDLMConfig.from_dict(config.to_dict())
    assert isinstance(again.backbone_config, Qwen2Config) and again.backbone_config.to_dict() == (
        config.backbone_config.to_dict()
    )
    assert (again.vocab_size, again.hidden_size, again.num_hidden_layers) == (V, 32, 2)
    assert isinstance(
        D3PMConfig(backbone_config=config.to_dict()["backbone_config"], time_conditioning=False).backbone_config,
        Qwen2Config,
    )
    assert CTMCConfig(backbone_config=backbone_config("gpt2"), time_conditioning=False).hidden_size == 32
