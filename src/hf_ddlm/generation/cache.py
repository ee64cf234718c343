"""The KV cache of block decoding: per-layer keys and values of the committed clean prefix.

Why it is exact (BD3-LM sec. 3.2; maintainers on bd3lms issue #26): under the block-causal mask a
clean block's keys and values depend only on itself and on earlier clean blocks, so they never
change once the block is final. The cache therefore stores them once, in the model's dtype, and
a block being denoised reads them:

* ``cache.read()``  -- a forward of the block being denoised attends to the cache plus itself and
  stores nothing (its rows are written to scratch space past the committed length);
* ``cache.commit()`` -- the one extra forward per block, on the now clean block (or a prompt):
  its keys and values are appended.

The model passes the per-layer callables of the returned view to the backbone, which hands them
the post-rotary k, v of the new tokens and attends to what they return.

Sliding window past the model length (the official cache): once the committed length reaches
``window`` (the model length), the oldest block is dropped and every later key keeps the values it
was computed with; the official code then re-applies rotary at window positions 0.. . Since rotary
attention depends only on position *differences*, we keep the post-rotary keys and move the
queries instead: positions continue as ``slot + rope_offset``, and the keys are re-rotated by
-rope_offset (once per ``window`` tokens, not per block) to keep angles small.
"""

from __future__ import annotations

import sys

import torch

from ..backbones.attention import block_causal_mask, materialize_mask, with_key_padding
from ..backbones.dit import Rotary, apply_rotary


class BlockKVCache:
    """Keys/values of the committed prefix for every layer: [B, H, window, d] buffers, allocated
    on the first write in the dtype of the keys (the model's dtype).

    Args:
        num_layers: transformer blocks of the backbone.
        window: the most keys kept (the model length); past it the cache slides by whole blocks.
        block_size: the unit of commits and of the slide.
        rotary: the backbone's ``Rotary`` module (re-rotates keys when the window is re-based).
        rebase_every: re-rotate the keys once the positions have moved this far (default: window);
            any value gives the same attention up to float rounding.
    """

    def __init__(self, num_layers: int, window: int, block_size: int, rotary, rebase_every: int | None = None):
        if window % block_size:
            raise ValueError(f"window ({window}) must be a multiple of block_size ({block_size})")
        self.num_layers = num_layers
        self.window = window
        self.block_size = block_size
        self.rotary = rotary
        self.rebase_every = window if rebase_every is None else rebase_every
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.key_mask: torch.Tensor | None = None  # [B, window], False on padded prompt keys
        self.length = 0  # committed slots
        self.pending: torch.Tensor | None = None  # a clean block to commit with the next forward
        self.rope_offset = 0  # rotary position of slot j is j + rope_offset

    @classmethod
    def for_model(cls, model, **kwargs) -> BlockKVCache:
        """The cache of ``model``'s backbone: the DiT's rotary table re-bases the keys; a backbone
        without one (a transformers model) never re-bases them (``rebase_every`` unbounded)."""
        config = model.config
        rotary = getattr(model.backbone, "rotary_emb", None)
        if not isinstance(rotary, Rotary):
            rotary = None
            kwargs.setdefault("rebase_every", sys.maxsize)
        return cls(config.num_hidden_layers, config.max_position_embeddings, config.block_size, rotary, **kwargs)

    def read(self, key_mask: torch.Tensor | None = None) -> CacheView:
        return CacheView(self, commit=False, key_mask=key_mask)

    def commit(self, key_mask: torch.Tensor | None = None, length: int | None = None) -> CacheView:
        """Append the new tokens' keys and values; with ``length``, only the first ``length`` new
        tokens are appended (the rest, e.g. the next block to denoise, are read-only)."""
        return CacheView(self, commit=True, key_mask=key_mask, length=length)

    # --- used by CacheView -------------------------------------------------------------------
    def _write(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        start, n = self.length, k.shape[2]
        if start + n > self.window:
            raise ValueError(f"{n} new tokens after {start} cached ones exceed the cache window ({self.window})")
        if self.keys[layer] is None:
            b, h, _, d = k.shape
            self.keys[layer] = k.new_empty(b, h, self.window, d)
            self.values[layer] = v.new_empty(b, h, self.window, d)
        self.keys[layer][:, :, start : start + n] = k
        self.values[layer][:, :, start : start + n] = v
        return self.keys[layer][:, :, : start + n], self.values[layer][:, :, : start + n]

    def _advance(self, n: int, key_mask: torch.Tensor | None):
        if key_mask is not None or self.key_mask is not None:
            batch = key_mask.shape[0] if key_mask is not None else self.key_mask.shape[0]
            if self.key_mask is None:
                self.key_mask = torch.ones(batch, self.window, dtype=torch.bool, device=key_mask.device)
            new = (
                key_mask
                if key_mask is not None
                else torch.ones(batch, n, dtype=torch.bool, device=self.key_mask.device)
            )
            self.key_mask[:, self.length : self.length + n] = new.bool()
        self.length += n
        if self.length >= self.window:
            # the official slide: keep the last window - block_size keys (values unchanged)
            drop = self.length - (self.window - self.block_size)
            self._shift(drop)

    def _shift(self, drop: int):
        keep = self.length - drop
        for layer in range(self.num_layers):
            if self.keys[layer] is None:
                continue
            self.keys[layer][:, :, :keep] = self.keys[layer][:, :, drop : self.length].clone()
            self.values[layer][:, :, :keep] = self.values[layer][:, :, drop : self.length].clone()
        if self.key_mask is not None:
            self.key_mask[:, :keep] = self.key_mask[:, drop : self.length].clone()
        self.length = keep
        self.rope_offset += drop
        if self.rope_offset >= self.rebase_every:
            self._rebase()

    def _rebase(self):
        """Rotate every cached key by -rope_offset so that slot j sits at rotary position j again
        (rotary is a rotation, R(-r) R(j + r) = R(j)); computed in float32."""
        positions = torch.full((1,), -self.rope_offset, dtype=torch.long, device=self.rotary.inv_freq.device)
        cos, sin = self.rotary(positions)
        for layer in range(self.num_layers):
            if self.keys[layer] is None:
                continue
            k = self.keys[layer][:, :, : self.length]
            self.keys[layer][:, :, : self.length] = apply_rotary(k.float(), cos, sin).to(k.dtype)
        self.rope_offset = 0


class CacheView:
    """One forward's access to a ``BlockKVCache``: per-layer callables (``layers``), the rotary
    positions and the attention mask of the new tokens, and ``close`` (called by the model after
    the forward) which appends the new keys when committing."""

    def __init__(
        self, cache: BlockKVCache, commit: bool, key_mask: torch.Tensor | None = None, length: int | None = None
    ):
        self.cache = cache
        self.commit = commit
        self.commit_length = length
        self.key_mask = key_mask  # [B, n_new] for the new tokens (False on padding), or None
        self.layers = [self._layer(i) for i in range(cache.num_layers)]

    def _layer(self, i):
        return lambda k, v: self.cache._write(i, k, v)

    def position_ids(self, n: int, device) -> torch.Tensor:
        start = self.cache.length + self.cache.rope_offset
        return torch.arange(start, start + n, device=device)

    def attention_mask(self, n: int, batch_size: int, device) -> torch.Tensor | None:
        """None for one block without padding (it sees every cached key and itself: the official
        cache path). Several blocks at once (a prompt) are block-causal among themselves."""
        cache, past = self.cache, self.cache.length
        if n <= cache.block_size and cache.key_mask is None and self.key_mask is None:
            return None
        mask_fn = block_causal_mask(cache.block_size, q_offset=past)
        if cache.key_mask is None and self.key_mask is None:
            return materialize_mask(mask_fn, n, past + n, device)
        old = (
            cache.key_mask[:, :past]
            if cache.key_mask is not None
            else torch.ones(batch_size, past, dtype=torch.bool, device=device)
        )
        new = (
            self.key_mask.bool()
            if self.key_mask is not None
            else torch.ones(batch_size, n, dtype=torch.bool, device=device)
        )
        keys = torch.cat([old, new], dim=1)
        return materialize_mask(with_key_padding(mask_fn, keys, q_offset=past), n, past + n, device, batch_size)

    def close(self, n: int):
        if self.commit:
            n = n if self.commit_length is None else self.commit_length
            self.cache._advance(n, None if self.key_mask is None else self.key_mask[:, :n])


__all__ = ["BlockKVCache", "CacheView"]
