"""Attention masks as ``(b, h, q_idx, kv_idx) -> bool`` functions, and the kernels that run them.

A mask function answers "may query ``q_idx`` attend to key ``kv_idx``?" (True = attend), in the
signature of ``transformers.masking_utils`` and of FlexAttention's ``mask_mod``. It is written with
tensor operations only, so the same definition is

* materialised into a dense boolean matrix for ``F.scaled_dot_product_attention``
  (:func:`materialize_mask`, by broadcasting index vectors), or
* compiled into a sparse ``BlockMask`` for FlexAttention (:func:`flex_block_mask`).

:func:`dot_product_attention` runs SDPA for a dense mask (or none) and FlexAttention for a
``BlockMask``. FlexAttention is optional: on CPU it has no backward, so
:func:`flex_attention_usable` says when it may be used.

BD3-LM's masks (Arriola et al. 2025, "Block Diffusion", sec. 3.2 and appendix B.6):

* :func:`block_diff_mask` -- training over the concatenation [x_t ; x_0] of length 2L.
* :func:`block_causal_mask` -- sampling: clean blocks attend to themselves and earlier blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # FlexAttention: torch >= 2.5
    from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

    FLEX_ATTENTION_AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the torch build
    BlockMask = create_block_mask = flex_attention = None
    FLEX_ATTENTION_AVAILABLE = False


def block_diff_mask(block_size: int, seq_len: int):
    """The block-diffusion training mask over [x_t ; x_0] (indices 0..L-1 noisy, L..2L-1 clean).

    With half(i) = i >= L and blk(i) = (i - L * half(i)) // block_size, a query may attend to a key iff

    * M_BD  (block diagonal): same block and same half -- bidirectional inside a block;
    * M_OBC (offset block-causal): a noisy query sees clean keys of *strictly earlier* blocks;
    * M_BC  (block-causal): a clean query sees clean keys of its own and earlier blocks.

    So x_t's block b is denoised from x_0's blocks < b only, exactly the context it has at sampling.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")

    def mask_fn(b, h, q_idx, kv_idx):
        q_clean, kv_clean = q_idx >= seq_len, kv_idx >= seq_len
        q_blk = torch.where(q_clean, q_idx - seq_len, q_idx) // block_size
        kv_blk = torch.where(kv_clean, kv_idx - seq_len, kv_idx) // block_size
        m_bd = (q_blk == kv_blk) & (q_clean == kv_clean)
        m_obc = (q_blk > kv_blk) & kv_clean & ~q_clean
        m_bc = (q_blk >= kv_blk) & kv_clean & q_clean
        return m_bd | m_obc | m_bc

    return mask_fn


def block_causal_mask(block_size: int, q_offset: int = 0):
    """Block-causal attention: query ``q_offset + q_idx`` sees keys of its own and earlier blocks
    (M_BC restricted to one sequence; the official sampler's mask without a KV cache). ``q_offset``
    places the queries after ``q_offset`` keys that are already in a cache."""
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")

    def mask_fn(b, h, q_idx, kv_idx):
        return kv_idx // block_size <= (q_idx + q_offset) // block_size

    return mask_fn


def with_key_padding(mask_fn, key_mask: torch.Tensor, q_offset: int = 0):
    """``mask_fn`` restricted to the keys where ``key_mask`` [B, KV] is True.

    A query always keeps itself (key ``q_offset + q_idx``) so that a padded query's row is never
    empty (an all-False row makes SDPA return NaN, which would leak into a masked loss as 0 * NaN).
    Real queries never see padded keys, so their outputs are unchanged.
    """
    key_mask = key_mask.bool()

    def mask_fn_padded(b, h, q_idx, kv_idx):
        return mask_fn(b, h, q_idx, kv_idx) & (key_mask[b, kv_idx] | (kv_idx == q_idx + q_offset))

    return mask_fn_padded


def materialize_mask(mask_fn, q_len: int, kv_len: int, device=None, batch_size: int | None = None) -> torch.Tensor:
    """A dense boolean mask for SDPA, [1, 1, q_len, kv_len], or [B, 1, q_len, kv_len] with
    ``batch_size`` (for masks that depend on b, such as key padding)."""
    q_idx = torch.arange(q_len, device=device)[None, None, :, None]
    kv_idx = torch.arange(kv_len, device=device)[None, None, None, :]
    if batch_size is None:
        return mask_fn(None, None, q_idx, kv_idx)
    b = torch.arange(batch_size, device=device)[:, None, None, None]
    return mask_fn(b, None, q_idx, kv_idx)


def flex_attention_usable(device: torch.device | str) -> bool:
    """FlexAttention runs on CUDA (compiled), and on CPU in eager mode for inference only: torch
    has no FlexAttention backward on CPU, so training there falls back to SDPA."""
    if not FLEX_ATTENTION_AVAILABLE:
        return False
    return torch.device(device).type == "cuda" or not torch.is_grad_enabled()


def flex_block_mask(mask_fn, q_len: int, kv_len: int, device=None, batch_size: int | None = None):
    """FlexAttention's ``BlockMask`` of ``mask_fn``. The tile size (128) only sets which tiles are
    skipped entirely; partially masked tiles still evaluate ``mask_fn`` per element, so the result
    equals the dense mask (BD3-LM issue #23)."""
    if not FLEX_ATTENTION_AVAILABLE:
        raise RuntimeError("FlexAttention needs torch >= 2.5 (torch.nn.attention.flex_attention)")
    return create_block_mask(mask_fn, B=batch_size, H=None, Q_LEN=q_len, KV_LEN=kv_len, device=device)


_compiled_flex = None


def _flex(q, k, v, block_mask):
    global _compiled_flex
    if q.device.type == "cuda":  # the fused kernel needs torch.compile (as the official code does)
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention, dynamic=False)
        return _compiled_flex(q, k, v, block_mask=block_mask)
    return flex_attention(q, k, v, block_mask=block_mask)


def flex_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """FlexAttention under a ``BlockMask``, in transformers' attention-function form: returns
    (output [B, Lq, H, d], None). Compiled on CUDA, eager on CPU (inference only there)."""
    if dropout:
        raise ValueError("FlexAttention takes no attention dropout")
    return _flex(query, key, value, attention_mask).transpose(1, 2).contiguous(), None


def dot_product_attention(q, k, v, attn_mask=None):
    """softmax(q k^T / sqrt(d)) v for q [B, H, Lq, d], k, v [B, H, Lk, d]. ``attn_mask`` is None,
    a boolean tensor broadcastable to [B, H, Lq, Lk] (True = attend; run by SDPA), or a
    FlexAttention ``BlockMask``."""
    if FLEX_ATTENTION_AVAILABLE and isinstance(attn_mask, BlockMask):
        return _flex(q, k, v, attn_mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=False)


__all__ = [
    "FLEX_ATTENTION_AVAILABLE",
    "block_causal_mask",
    "block_diff_mask",
    "dot_product_attention",
    "flex_attention_forward",
    "flex_attention_usable",
    "flex_block_mask",
    "materialize_mask",
    "with_key_padding",
]
