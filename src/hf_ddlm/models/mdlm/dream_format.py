"""Dream's checkpoint format (Ye et al. 2025, "Dream 7B: Diffusion Large Language Models";
Dream-org/Dream-v0-Base-7B and -Instruct-7B): MDLM on a Qwen2 decoder run bidirectionally, with
shifted prediction.

Dream's modeling code is Qwen2's (RMSNorm, RoPE, biases on q/k/v only, the gated SiLU MLP) with the
causal mask removed, under Qwen2's weight names (``model.*``, ``lm_head.weight``). Dream was adapted
from the autoregressive Qwen2.5 and keeps its next-token head: the prediction for position i is read
from the hidden state at i - 1 (position 0 from its own; ``generation_utils`` shifts the logits by
``cat([logits[:, :1], logits[:, :-1]])``), which is ``shifted_prediction=True``. The mask token is
``config.mask_token_id`` (151666 at full size). Sliding-window attention and RoPE scaling, which
the published models do not use, are refused by name.
"""

from __future__ import annotations

from .official_formats import OfficialFormat, register_official_format, require

# Dream's README example with its DreamGenerationConfig defaults (steps 512, eps 1e-3) and deterministic
# proposals (temperature 0): alg="entropy", lowest-entropy positions first; the count per step is
# generation_utils' int(n (1 - s / t)), every mask left at the last step
DREAM_GENERATION_CONFIG = {
    "sampler": "confidence",
    "sampler_kwargs": {"ordering": "entropy", "deterministic": True, "allocation": "linear"},
    "num_inference_steps": 512,
    "t_min": 1e-3,
    "max_new_tokens": 512,
    "noise_removal": False,  # the last step commits every mask left
}

# configuration_dream.DreamConfig defaults, for fields a config.json leaves out
_DREAM_DEFAULTS = {
    "vocab_size": 151936,
    "hidden_size": 4096,
    "intermediate_size": 22016,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "rope_theta": 10000.0,
    "attention_dropout": 0.0,
    "mask_token_id": 151666,
    "pad_token_id": 151643,
}


def _dream_get(official: dict, field: str):
    value = official.get(field)
    return _DREAM_DEFAULTS.get(field) if value is None else value


def _dream_sizes(official: dict) -> dict:
    d, heads = _dream_get(official, "hidden_size"), _dream_get(official, "num_attention_heads")
    if d % heads:
        raise ValueError(f"Dream config: hidden_size ({d}) must be a multiple of num_attention_heads ({heads})")
    kv_heads = _dream_get(official, "num_key_value_heads") or heads
    if heads % kv_heads:
        raise ValueError(
            f"Dream config: num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kv_heads})"
        )
    return {
        "vocab": _dream_get(official, "vocab_size"),
        "d": d,
        "kv": kv_heads * (d // heads),
        "mlp": _dream_get(official, "intermediate_size"),
        "layers": _dream_get(official, "num_hidden_layers"),
        "heads": heads,
        "kv_heads": kv_heads,
    }


def dream_to_mdlm_config(official: dict) -> dict:
    """An official Dream config.json dict -> an MDLMConfig dict with a ``qwen2`` backbone_config."""
    require(official, "Dream", "use_sliding_window", (False, None), False)
    require(official, "Dream", "rope_scaling", (None,), None)
    require(official, "Dream", "hidden_act", ("silu",), "silu")
    n = _dream_sizes(official)
    special = {"pad_token_id": _dream_get(official, "pad_token_id")}
    special.update({k: official[k] for k in ("bos_token_id", "eos_token_id") if official.get(k) is not None})
    backbone = {
        "model_type": "qwen2",
        "vocab_size": n["vocab"],
        "hidden_size": n["d"],
        "intermediate_size": n["mlp"],
        "num_hidden_layers": n["layers"],
        "num_attention_heads": n["heads"],
        "num_key_value_heads": n["kv_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": _dream_get(official, "max_position_embeddings"),
        "rms_norm_eps": _dream_get(official, "rms_norm_eps"),
        "rope_parameters": {"rope_type": "default", "rope_theta": float(_dream_get(official, "rope_theta"))},
        "use_sliding_window": False,
        "attention_dropout": _dream_get(official, "attention_dropout"),
        "tie_word_embeddings": bool(_dream_get(official, "tie_word_embeddings")),
        **special,
    }
    out = {
        "model_type": "mdlm",
        "vocab_size": n["vocab"],
        "mask_token_id": _dream_get(official, "mask_token_id"),
        "max_position_embeddings": _dream_get(official, "max_position_embeddings"),
        "backbone_config": backbone,
        "shifted_prediction": True,
        "time_conditioning": False,
        "architectures": ["MDLMForDiffusionLM"],
        **special,
    }
    if official.get("torch_dtype") is not None:
        out["dtype"] = official["torch_dtype"]
    return out


def dream_weights(official: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{official weight name: (our name, shape)}: Qwen2's names, under ``backbone.``."""
    n = _dream_sizes(official)
    d, kv, mlp = n["d"], n["kv"], n["mlp"]
    out = {
        "model.embed_tokens.weight": (n["vocab"], d),
        "model.norm.weight": (d,),
    }
    if not _dream_get(official, "tie_word_embeddings"):
        out["lm_head.weight"] = (n["vocab"], d)
    per_layer = {
        "input_layernorm.weight": (d,),
        "self_attn.q_proj.weight": (d, d),
        "self_attn.q_proj.bias": (d,),
        "self_attn.k_proj.weight": (kv, d),
        "self_attn.k_proj.bias": (kv,),
        "self_attn.v_proj.weight": (kv, d),
        "self_attn.v_proj.bias": (kv,),
        "self_attn.o_proj.weight": (d, d),
        "post_attention_layernorm.weight": (d,),
        "mlp.gate_proj.weight": (mlp, d),
        "mlp.up_proj.weight": (mlp, d),
        "mlp.down_proj.weight": (d, mlp),
    }
    for i in range(n["layers"]):
        out.update({f"model.layers.{i}.{k}": shape for k, shape in per_layer.items()})
    return {k: (f"backbone.{k}", shape) for k, shape in out.items()}


# diffusion_generate's alg -> our confidence ordering ("origin" is the ancestral sampler)
_DREAM_ORDERINGS = {"entropy": "entropy", "maskgit_plus": "top_prob", "topk_margin": "margin"}


def dream_generation_config(folder_config: dict) -> dict:
    """What a Dream generation_config.json (``DreamGenerationConfig``: alg, steps, eps, temperature,
    top_p, top_k, max_new_tokens) sets, as DiffusionGenerationConfig fields. ``alg="origin"`` reveals
    each mask with probability 1 - s / t (MDLM's ancestral step, linear schedule); the others rank
    positions (temperature 0: argmax proposals). ``alg_temp`` > 0 (positions drawn by confidence)
    has no counterpart and is refused."""
    out = {}
    if folder_config.get("steps") is not None:
        out["num_inference_steps"] = folder_config["steps"]
    if folder_config.get("eps") is not None:
        out["t_min"] = folder_config["eps"]
    for key in ("max_new_tokens", "top_p", "top_k"):
        if folder_config.get(key) is not None:
            out[key] = folder_config[key]
    temperature = folder_config.get("temperature")
    if temperature:
        out["temperature"] = temperature
    alg = folder_config.get("alg")
    if alg is None:
        return out
    if folder_config.get("alg_temp"):
        raise ValueError(
            f"Dream generation config: alg_temp={folder_config['alg_temp']!r} (positions drawn by confidence) is not "
            "supported; use alg_temp 0 or null"
        )
    if alg == "origin":
        out.update(sampler="ancestral", sampler_kwargs={"move_chance": "linear"}, noise_removal=True)
    elif alg in _DREAM_ORDERINGS:
        kwargs = {"ordering": _DREAM_ORDERINGS[alg], "deterministic": not temperature, "allocation": "linear"}
        out.update(sampler="confidence", sampler_kwargs=kwargs)
    else:
        raise ValueError(
            f"Dream generation config: alg must be one of origin, {', '.join(_DREAM_ORDERINGS)}; got {alg!r}"
        )
    return out


DREAM = register_official_format(
    OfficialFormat(
        name="Dream",
        model_type="Dream",
        to_mdlm_config=dream_to_mdlm_config,
        weights=dream_weights,
        generation_config=DREAM_GENERATION_CONFIG,
        read_generation_config=dream_generation_config,
    )
)

__all__ = ["DREAM", "dream_generation_config", "dream_to_mdlm_config", "dream_weights"]
