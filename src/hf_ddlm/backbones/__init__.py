"""Networks behind the methods: the DDiT transformer (:mod:`.dit`), the attention masks and
kernels it runs (:mod:`.attention`), and any transformers base model run bidirectionally
(:mod:`.transformers_backbone`); ``build_backbone(config)`` picks one."""

from .attention import (
    FLEX_ATTENTION_AVAILABLE,
    block_causal_mask,
    block_diff_mask,
    dot_product_attention,
    flex_attention_forward,
    flex_attention_usable,
    flex_block_mask,
    materialize_mask,
    with_key_padding,
)
from .dit import (
    DDiTBlock,
    DDitFinalLayer,
    DiT,
    EmbeddingLayer,
    LayerNorm,
    Rotary,
    TimestepEmbedder,
    apply_rotary,
    eager_attention_forward,
    init_dit_weights,
    modulate,
    padding_to_attn_mask,
    rotate_half,
)
from .transformers_backbone import TransformersBackbone, build_backbone

__all__ = [
    "FLEX_ATTENTION_AVAILABLE",
    "DDiTBlock",
    "DDitFinalLayer",
    "DiT",
    "EmbeddingLayer",
    "LayerNorm",
    "Rotary",
    "TimestepEmbedder",
    "TransformersBackbone",
    "apply_rotary",
    "block_causal_mask",
    "block_diff_mask",
    "build_backbone",
    "dot_product_attention",
    "eager_attention_forward",
    "flex_attention_forward",
    "flex_attention_usable",
    "flex_block_mask",
    "init_dit_weights",
    "materialize_mask",
    "modulate",
    "padding_to_attn_mask",
    "rotate_half",
    "with_key_padding",
]
