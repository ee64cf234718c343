"""LLaDA's checkpoint format (Nie et al. 2025, "Large Language Diffusion Models"; GSAI-ML/LLaDA-8B-Base
and -Instruct): MDLM on a Llama-architecture decoder run bidirectionally.

LLaDA's modeling code is OLMo's with the ``"llama"`` block: pre-norm RMSNorm, RoPE (the rotate-half
form, theta from the config), attention without causal mask, and the gated MLP
``ff_out(act(ff_proj(x)) * up_proj(x))``, i.e. Llama's ``down(silu(gate(x)) * up(x))``; no biases,
unscaled logits, an untied output head. So its weights are those of ``LlamaModel`` + ``lm_head``
under other names (``model.transformer.wte`` = ``embed_tokens``, ``blocks.i.attn_norm`` / ``ff_norm``
= ``input_layernorm`` / ``post_attention_layernorm``, ``attn_out`` = ``o_proj``, ``ln_f`` = ``norm``,
``transformer.ff_out`` = ``lm_head``). The mask token is ``config.mask_token_id`` (126336 at full
size, inside the 126464-token vocabulary). Options of the OLMo code outside this (ALiBi, learned
positions, LayerNorm, biases, QK norm, scaled logits, other activations or blocks) are refused by name.
"""

from __future__ import annotations

from .official_formats import OfficialFormat, register_official_format, require

# generate.py of ML-GSAI/LLaDA (``main``): low-confidence remasking, temperature 0, 128 new tokens in
# semi-autoregressive blocks of 32, 128 steps (one token per step)
LLADA_GENERATION_CONFIG = {
    "sampler": "confidence",
    "sampler_kwargs": {"ordering": "top_prob", "deterministic": True},
    "num_inference_steps": 128,
    "block_length": 32,
    "max_new_tokens": 128,
    "noise_removal": False,  # the last step of each block commits every mask left
}

# the configuration_llada.ModelConfig defaults, for fields a config.json leaves out
_LLADA_DEFAULTS = {
    "block_type": "sequential",
    "activation_type": "swiglu",
    "layer_norm_type": "default",
    "rope": False,
    "alibi": False,
    "include_bias": False,
    "include_qkv_bias": False,
    "bias_for_layer_norm": None,
    "layer_norm_with_affine": True,
    "attention_layer_norm": False,
    "input_emb_norm": False,
    "scale_logits": False,
    "block_group_size": 1,
    "weight_tying": True,
    "n_kv_heads": None,
    "multi_query_attention": None,
    "mlp_ratio": 4,
    "mlp_hidden_size": None,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_sequence_length": 1024,
    "attention_dropout": 0.1,
}


def _llada_get(official: dict, field: str):
    return official.get(field, _LLADA_DEFAULTS.get(field))


def _check_llada_supported(official: dict) -> None:
    name = "LLaDA"
    require(official, name, "block_type", ("llama",), _LLADA_DEFAULTS["block_type"])
    require(official, name, "activation_type", ("silu",), _LLADA_DEFAULTS["activation_type"])
    require(official, name, "layer_norm_type", ("rms",), _LLADA_DEFAULTS["layer_norm_type"])
    require(official, name, "rope", (True,), False)
    for field in (
        "alibi",
        "include_bias",
        "include_qkv_bias",
        "attention_layer_norm",
        "input_emb_norm",
        "scale_logits",
    ):
        require(official, name, field, (False, None), _LLADA_DEFAULTS[field])
    require(official, name, "bias_for_layer_norm", (False, None), None)
    require(official, name, "layer_norm_with_affine", (True,), True)
    require(official, name, "block_group_size", (1,), 1)
    for field in ("d_model", "n_heads", "n_layers", "vocab_size", "mask_token_id"):
        if not isinstance(official.get(field), int) or isinstance(official.get(field), bool):
            raise ValueError(f"LLaDA config: {field} must be an integer, got {official.get(field)!r}")


def _llada_sizes(official: dict) -> dict:
    d_model, n_heads = official["d_model"], official["n_heads"]
    if _llada_get(official, "multi_query_attention"):
        n_kv_heads = 1
    else:
        n_kv_heads = _llada_get(official, "n_kv_heads") or n_heads
    hidden = _llada_get(official, "mlp_hidden_size") or _llada_get(official, "mlp_ratio") * d_model
    return {
        "vocab": official.get("embedding_size") or official["vocab_size"],
        "d_model": d_model,
        "head_dim": d_model // n_heads,
        "n_heads": n_heads,
        "n_kv_heads": n_kv_heads,
        "mlp": hidden,
        "layers": official["n_layers"],
    }


def llada_to_mdlm_config(official: dict) -> dict:
    """An official LLaDA config.json dict -> an MDLMConfig dict with a ``llama`` backbone_config."""
    _check_llada_supported(official)
    n = _llada_sizes(official)
    if n["d_model"] % n["n_heads"] or n["n_heads"] % n["n_kv_heads"]:
        raise ValueError(
            f"LLaDA config: d_model ({n['d_model']}) must be a multiple of n_heads ({n['n_heads']}), and n_heads of "
            f"n_kv_heads ({n['n_kv_heads']})"
        )
    special = {k: official[k] for k in ("pad_token_id", "eos_token_id", "bos_token_id") if official.get(k) is not None}
    backbone = {
        "model_type": "llama",
        "vocab_size": n["vocab"],
        "hidden_size": n["d_model"],
        "intermediate_size": n["mlp"],
        "num_hidden_layers": n["layers"],
        "num_attention_heads": n["n_heads"],
        "num_key_value_heads": n["n_kv_heads"],
        "head_dim": n["head_dim"],
        "hidden_act": "silu",
        "max_position_embeddings": _llada_get(official, "max_sequence_length"),
        "rms_norm_eps": _llada_get(official, "rms_norm_eps"),
        "rope_parameters": {"rope_type": "default", "rope_theta": float(_llada_get(official, "rope_theta"))},
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": _llada_get(official, "attention_dropout"),
        "tie_word_embeddings": bool(_llada_get(official, "weight_tying")),
        **special,
    }
    out = {
        "model_type": "mdlm",
        "vocab_size": n["vocab"],
        "mask_token_id": official["mask_token_id"],
        "max_position_embeddings": _llada_get(official, "max_sequence_length"),
        "backbone_config": backbone,
        "shifted_prediction": False,
        "time_conditioning": False,
        "architectures": ["MDLMForDiffusionLM"],
        **special,
    }
    if official.get("torch_dtype") is not None:
        out["dtype"] = official["torch_dtype"]
    return out


def llada_weights(official: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{official weight name: (our name, shape)} for the architecture the config describes."""
    n = _llada_sizes(official)
    d, kv = n["d_model"], n["n_kv_heads"] * n["head_dim"]
    src, dst = "model.transformer.", "backbone.model."
    out = {
        f"{src}wte.weight": (f"{dst}embed_tokens.weight", (n["vocab"], d)),
        f"{src}ln_f.weight": (f"{dst}norm.weight", (d,)),
    }
    if not _llada_get(official, "weight_tying"):
        out[f"{src}ff_out.weight"] = ("backbone.lm_head.weight", (n["vocab"], d))
    per_layer = {
        "attn_norm.weight": ("input_layernorm.weight", (d,)),
        "q_proj.weight": ("self_attn.q_proj.weight", (d, d)),
        "k_proj.weight": ("self_attn.k_proj.weight", (kv, d)),
        "v_proj.weight": ("self_attn.v_proj.weight", (kv, d)),
        "attn_out.weight": ("self_attn.o_proj.weight", (d, d)),
        "ff_norm.weight": ("post_attention_layernorm.weight", (d,)),
        "ff_proj.weight": ("mlp.gate_proj.weight", (n["mlp"], d)),  # the activated branch
        "up_proj.weight": ("mlp.up_proj.weight", (n["mlp"], d)),
        "ff_out.weight": ("mlp.down_proj.weight", (d, n["mlp"])),
    }
    for i in range(n["layers"]):
        for theirs, (ours, shape) in per_layer.items():
            out[f"{src}blocks.{i}.{theirs}"] = (f"{dst}layers.{i}.{ours}", shape)
    return out


LLADA = register_official_format(
    OfficialFormat(
        name="LLaDA",
        model_type="llada",
        to_mdlm_config=llada_to_mdlm_config,
        weights=llada_weights,
        generation_config=LLADA_GENERATION_CONFIG,
    )
)

__all__ = ["LLADA", "llada_to_mdlm_config", "llada_weights"]
