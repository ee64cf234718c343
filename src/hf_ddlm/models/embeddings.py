"""The vocabulary of a model: its input embedding and output head, and resizing them together.

The embedding is the DiT's ``EmbeddingLayer`` (a raw parameter, ``vocab_embed.embedding``, the
official checkpoints' name), so transformers' ``nn.Embedding``-only resizing does not apply; this
mixin resizes it in place. An absorbing model's mask token is the last id (``mask_token_id =
vocab_size - 1``), so resizing inserts or drops ordinary rows *before* the mask row.
"""

from __future__ import annotations

import math

import torch

from ..backbones.dit import EmbeddingLayer
from ..processes import get_graph


class VocabularyResizingMixin:
    """``get/set_input_embeddings``, ``get/set_output_embeddings`` and ``resize_token_embeddings``
    for a model whose ``backbone`` has them (the DiT: ``vocab_embed`` and ``output_layer.linear``;
    a ``TransformersBackbone``: the base model's embedding and ``lm_head``, possibly tied)."""

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: torch.nn.Embedding):
        self.backbone.set_input_embeddings(value)

    def get_output_embeddings(self) -> torch.nn.Linear:
        return self.backbone.get_output_embeddings()

    def set_output_embeddings(self, value: torch.nn.Linear):
        self.backbone.set_output_embeddings(value)

    def _resize_token_embeddings(self, new_num_tokens, pad_to_multiple_of=None, mean_resizing=True):
        """Resize the vocabulary in place (``resize_token_embeddings`` calls this, then sets
        ``config.vocab_size``). Rows keep their token ids, except the absorbing mask, which stays
        the last id: new rows go before it, and shrinking drops the rows before it. New rows are the
        mean of the old ordinary rows (``mean_resizing``) or a fresh init. The output head (weight
        and bias) follows, so the parameters keep their official names."""
        embedding, head = self.get_input_embeddings(), self.get_output_embeddings()
        old = embedding.num_embeddings
        if new_num_tokens is None:
            new_num_tokens = old
        if not isinstance(new_num_tokens, int) or isinstance(new_num_tokens, bool):
            raise ValueError(f"new_num_tokens must be an integer, got {new_num_tokens!r}")
        if pad_to_multiple_of is not None:
            if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
                # transformers' own wording (its tests match it)
                raise ValueError(
                    f"Asking to pad the embedding matrix to a multiple of `{pad_to_multiple_of}`, which is not and "
                    "integer. Please make sure to pass an integer"
                )
            new_num_tokens = -(-new_num_tokens // pad_to_multiple_of) * pad_to_multiple_of
        mask_last = self.config.mask_token_id is not None and self.config.mask_token_id == old - 1
        if new_num_tokens < 1 + mask_last:
            raise ValueError(f"new_num_tokens must be at least {1 + mask_last}, got {new_num_tokens}")
        if new_num_tokens == old:
            return embedding
        tied = head.weight is embedding.weight
        name = "embedding" if isinstance(embedding, EmbeddingLayer) else "weight"  # the DiT's official name
        with torch.no_grad():
            rows = getattr(embedding, name)
            setattr(
                embedding,
                name,
                torch.nn.Parameter(
                    self._resized_rows(rows, new_num_tokens, mask_last, mean_resizing, "embedding"),
                    requires_grad=rows.requires_grad,
                ),
            )
            if name == "weight":
                embedding.num_embeddings = new_num_tokens
            head.weight = (
                embedding.weight
                if tied
                else torch.nn.Parameter(
                    self._resized_rows(head.weight, new_num_tokens, mask_last, mean_resizing, "head"),
                    requires_grad=head.weight.requires_grad,
                )
            )
            if head.bias is not None:
                head.bias = torch.nn.Parameter(
                    self._resized_rows(head.bias, new_num_tokens, mask_last, mean_resizing, "head"),
                    requires_grad=head.bias.requires_grad,
                )
            head.out_features = new_num_tokens
        return embedding

    def _resized_rows(self, rows, new_num_tokens, mask_last, mean_resizing, kind):
        ordinary = rows[:-1] if mask_last else rows
        keep = min(len(ordinary), new_num_tokens - mask_last)
        extra = new_num_tokens - mask_last - keep
        new = rows.new_zeros((extra, *rows.shape[1:]))  # the output head's official init is zero
        if extra and mean_resizing:
            new.copy_(ordinary.mean(0, keepdim=True).expand_as(new))
        elif extra and kind == "embedding":
            torch.nn.init.kaiming_uniform_(new, a=math.sqrt(5))
        parts = [ordinary[:keep], new] + ([rows[-1:]] if mask_last else [])
        return torch.cat(parts).contiguous()

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        """transformers' ``resize_token_embeddings``; an absorbing model's mask stays the last id
        (``config.mask_token_id`` follows), and the forward process is rebuilt for the new vocabulary."""
        embedding = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        vocab_size = self.config.vocab_size
        if self.config.backbone_config is not None:
            self.config.backbone_config.vocab_size = vocab_size  # one vocabulary, held in both configs
        if self.config.mask_token_id is not None and self.graph.mask_token_id is not None:
            self.config.mask_token_id = vocab_size - 1
        self.graph = get_graph(self.config.graph, vocab_size)  # the forward process over the new vocabulary
        return embedding


__all__ = ["VocabularyResizingMixin"]
