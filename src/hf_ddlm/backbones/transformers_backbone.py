"""Any transformers base model as the denoiser of a diffusion LM, run with bidirectional attention.

The diffusion LMs used at scale (LLaDA, Dream, DiffuLLaMA/DiffuGPT) are masked diffusion on a
standard decoder whose attention is made non-causal. ``TransformersBackbone`` holds
``model = AutoModel.from_config(backbone_config)`` (the base model, no causal head) and its own
``lm_head``, and has the DiT's call signature, so every method runs on it unchanged.

How a decoder runs bidirectionally in transformers 5: its mask comes from
``masking_utils.create_causal_mask``, which (i) returns a 4-D mask it is given as it is, and (ii)
builds a bidirectional mask instead of a causal one when ``config.is_causal`` is False. SDPA
applies ``is_causal`` itself when the mask is ``None`` (no padding), reading the attention module's
``is_causal`` attribute, so that is set to False on every module too. So: ``backbone_config.is_causal
= False``; a [B, L] padding mask goes to the model as is (it builds the bidirectional mask for its
attention kernel); a boolean [B|1, 1, L, Lk] pattern (BD3-LM's block masks) is passed as the full
4-D mask (additive for kernels other than SDPA). A model type whose code does not build its masks
through ``masking_utils`` (or that has no base model, or is an encoder-decoder) cannot be made
bidirectional this way: it is refused at construction.

There is no input for the time: ``sigma`` is accepted for the DiT's signature and ignored (the
config requires ``time_conditioning=False``). BD3-LM's block KV cache (``kv_caches``, per-layer
callables) is handed to the model as its ``cache`` argument, whose ``update`` the attention layers
call with their new keys and values.
"""

from __future__ import annotations

import sys

import torch
from torch import nn
from transformers import AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.utils.output_capturing import _active_collector

from .dit import DiT

# the masking_utils entry points through which a model's masks honour config.is_causal and 4-D masks
_MASK_BUILDERS = ("create_causal_mask", "create_bidirectional_mask", "create_sliding_window_causal_mask")


class TransformersBackbone(PreTrainedModel):
    """``model``: the transformers base model; ``lm_head``: Linear(hidden, vocab, bias=False), tied to
    the input embeddings when ``backbone_config.tie_word_embeddings``. ``shifted_prediction``: the
    output at position i is read from the hidden state at i - 1 (position 0 from its own), the
    convention of DiffuGPT/DiffuLLaMA and Dream (``logits = cat([h[:, :1], h[:, :-1]])``)."""

    config_class = PreTrainedConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_attention_backend = True
    # BD3-LM's BlockKVCache is read through the model's own cache argument (``_BlockCacheLayers``);
    # it does not slide past the model length here, since the keys of a model with absolute positions
    # (GPT-2) cannot be re-based: a longer canvas is decoded by recomputing the prefix
    block_kv_cache_slides = False

    def __init__(self, config: PreTrainedConfig, shifted_prediction: bool = False):
        if getattr(config, "is_encoder_decoder", False):
            raise ValueError(
                f"backbone_config of model_type {config.model_type!r} is an encoder-decoder; a diffusion backbone "
                "must be a single stack (a decoder such as llama, qwen2, gpt2, or an encoder)"
            )
        base_class = _base_model_class(config)
        module = sys.modules.get(base_class.__module__)
        if module is None or not any(hasattr(module, name) for name in _MASK_BUILDERS):
            raise ValueError(
                f"backbone_config of model_type {config.model_type!r}: {base_class.__name__} does not build its "
                "attention masks through transformers.masking_utils, so it has no bidirectional mode"
            )
        config.is_causal = False  # masking_utils then builds bidirectional masks
        super().__init__(config)
        self.model = AutoModel.from_config(config)
        for sub in self.model.modules():
            if hasattr(sub, "is_causal"):
                sub.is_causal = False  # SDPA's own causal flag, used when the mask is None
        self.shifted_prediction = shifted_prediction
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        embed = self.model.get_input_embeddings()
        name = next(n for n, m in self.model.named_modules() if m is embed)
        self._tied_weights_keys = {"lm_head.weight": f"model.{name}.weight"}
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        """The head gets the causal-LM head's init (normal, the backbone's ``initializer_range``);
        the base model's modules are initialised by its own ``_init_weights``."""
        if module is self.lm_head:
            nn.init.normal_(module.weight, std=getattr(self.config, "initializer_range", 0.02))

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def _attention_mask(self, attention_mask, dtype):
        """[B, L] padding passes (the model builds its bidirectional mask); a 4-D boolean pattern is
        the full mask: boolean for SDPA, additive (0 / dtype min) for the other kernels. A FlexAttention
        ``BlockMask`` (BD3-LM under "flex_attention") passes as well."""
        if not torch.is_tensor(attention_mask) or attention_mask.dim() != 4:
            return attention_mask
        mask = attention_mask.bool()
        if self.config._attn_implementation == "sdpa":
            return mask
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)

    def forward(
        self,
        input_ids,
        sigma=None,
        attention_mask=None,
        position_ids=None,
        kv_caches=None,
        output_positions=None,
        inputs_embeds=None,
    ):
        """The DiT's signature: input_ids [B, L]; ``sigma`` ignored (no time input); attention_mask
        [B, L] or a boolean [B|1, 1, L, Lk]; position_ids [B, L] or [L] (default 0..L-1);
        ``inputs_embeds`` [B, L, D] in place of the embedding of ``input_ids``; ``output_positions``
        [B, K]: only those rows reach the head. Returns logits [B, L, V] (or [B, K, V])."""
        if kv_caches is not None and attention_mask is None:
            # a block that sees every cached key and itself: an all-True mask broadcast over the keys
            # (a 4-D mask is used as given; None would make masking_utils ask the cache for its sizes)
            attention_mask = torch.ones(1, 1, input_ids.shape[1], 1, dtype=torch.bool, device=input_ids.device)
        if position_ids is not None and position_ids.dim() == 1:
            position_ids = position_ids[None]
        dtype = self.lm_head.weight.dtype if inputs_embeds is None else inputs_embeds.dtype
        # output recording: the base model collects its layers' outputs under its own capture, so
        # the requests of the outer model's collector are passed on and the results handed back
        collector = _active_collector.get() or {}
        record = {f"output_{k}": True for k in ("hidden_states", "attentions") if k in collector}
        out = self.model(
            input_ids=None if inputs_embeds is not None else input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=self._attention_mask(attention_mask, dtype),
            position_ids=position_ids,
            use_cache=False,
            cache=None if kv_caches is None else _BlockCacheLayers(kv_caches),
            **record,
        )
        for key in ("hidden_states", "attentions"):
            if key in collector:
                recorded = getattr(out, key, None) or ()
                chosen = collector.get("_hidden_states_layers") if key == "hidden_states" else None
                collector[key].extend(h if chosen is None or i in chosen else None for i, h in enumerate(recorded))
        h = out.last_hidden_state
        if output_positions is not None:
            rows = (output_positions - 1).clamp_min(0) if self.shifted_prediction else output_positions
            h = h.gather(1, rows[..., None].expand(-1, -1, h.shape[-1]))
        elif self.shifted_prediction:
            h = torch.cat([h[:, :1], h[:, :-1]], dim=1)
        return self.lm_head(h)


class _BlockCacheLayers:
    """BD3-LM's per-layer cache callables (``BlockKVCache`` views) in the place of a transformers
    ``Cache``: each attention layer hands ``update`` its new (post-rotary) keys and values and attends
    to what it returns, the cached prefix followed by them."""

    def __init__(self, layers):
        self.layers = layers

    def update(self, key_states, value_states, layer_idx, **kwargs):
        return self.layers[layer_idx](key_states, value_states)


def _base_model_class(config: PreTrainedConfig) -> type:
    """The class ``AutoModel.from_config(config)`` builds, or a ValueError naming the model type."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    try:
        return MODEL_MAPPING[type(config)]
    except KeyError:
        raise ValueError(
            f"backbone_config of model_type {config.model_type!r} has no transformers base model (AutoModel "
            "cannot build one from it)"
        ) from None


def build_backbone(config) -> nn.Module:
    """The denoiser a diffusion config names: the DiT when ``config.backbone_config`` is None, else a
    ``TransformersBackbone`` of that config (``shifted_prediction`` from the diffusion config)."""
    if getattr(config, "backbone_config", None) is None:
        return DiT(config)
    return TransformersBackbone(config.backbone_config, shifted_prediction=config.shifted_prediction)


__all__ = ["TransformersBackbone", "build_backbone"]
