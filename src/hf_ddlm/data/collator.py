"""Batches for diffusion LMs: variable-length rows padded so that padding is never noised, never
scored and never attended to.

Equal-length rows (:func:`hf_ddlm.data.chunk_dataset`) need no collator at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DiffusionDataCollator:
    """Pad a list of examples into a batch for a diffusion LM.

    Each example holds ``input_ids`` (list or 1-D tensor) and optionally ``labels`` (defaults to
    ``input_ids``; -100 inside an example marks an unscored, un-noised position such as a prompt).
    Rows are right-padded with ``pad_token_id`` to the longest row (rounded up to
    ``pad_to_multiple_of``, or always to ``max_length`` when it is given); the batch gets
    ``labels`` = -100 and ``attention_mask`` = 0 on padding.

    Args:
        pad_token_id: id written at padded positions (its value never matters: padding is masked
            out of attention and of the loss). Must not be the absorbing mask id.
        pad_to_multiple_of: round the padded length up to a multiple of this.
        max_length: pad every batch to exactly this length (rows longer than it raise).
    """

    pad_token_id: int = 0
    pad_to_multiple_of: int | None = None
    max_length: int | None = None

    def __post_init__(self):
        if not isinstance(self.pad_token_id, int) or self.pad_token_id < 0:
            raise ValueError(f"pad_token_id must be a non-negative integer, got {self.pad_token_id!r}")
        for name in ("pad_to_multiple_of", "max_length"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")

    @classmethod
    def from_tokenizer(cls, tokenizer, **kwargs) -> DiffusionDataCollator:
        """Uses the tokenizer's pad token (its eos token when it has no pad token)."""
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("tokenizer has neither a pad_token_id nor an eos_token_id; pass pad_token_id")
        return cls(pad_token_id=pad, **kwargs)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("features must be a non-empty list of examples")
        ids = [torch.as_tensor(f["input_ids"], dtype=torch.long).reshape(-1) for f in features]
        labels = [
            torch.as_tensor(f["labels"], dtype=torch.long).reshape(-1) if f.get("labels") is not None else i
            for f, i in zip(features, ids)
        ]
        for k, (i, lab) in enumerate(zip(ids, labels)):
            if lab.shape != i.shape:
                raise ValueError(f"example {k}: labels has length {lab.numel()} but input_ids has {i.numel()}")
        masks = [
            torch.as_tensor(f["attention_mask"], dtype=torch.long).reshape(-1)
            if f.get("attention_mask") is not None
            else torch.ones_like(i)
            for f, i in zip(features, ids)
        ]
        longest = max(i.numel() for i in ids)
        if self.max_length is not None:
            if longest > self.max_length:
                raise ValueError(f"an example has {longest} tokens, more than max_length={self.max_length}")
            length = self.max_length
        else:
            length = longest
            if self.pad_to_multiple_of is not None:
                length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch_ids = torch.full((len(ids), length), self.pad_token_id, dtype=torch.long)
        batch_labels = torch.full((len(ids), length), -100, dtype=torch.long)
        batch_mask = torch.zeros((len(ids), length), dtype=torch.long)
        for k, (i, lab, m) in enumerate(zip(ids, labels, masks)):
            n = i.numel()
            batch_ids[k, :n] = i
            batch_mask[k, :n] = m
            # a position that is not attended to cannot be scored either
            batch_labels[k, :n] = lab.masked_fill(m == 0, -100)
        return {"input_ids": batch_ids, "labels": batch_labels, "attention_mask": batch_mask}


__all__ = ["DiffusionDataCollator"]
