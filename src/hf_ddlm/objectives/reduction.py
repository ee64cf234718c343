"""How a per-token loss becomes the scalar the optimiser sees (``config.loss_reduction``)."""

from __future__ import annotations

import torch


def reduce_loss(loss_per_token, loss_mask, reduction, num_items_in_batch=None) -> torch.Tensor:
    """``token_mean``: sum / number of loss tokens (or ``num_items_in_batch`` under gradient
    accumulation). ``sequence_sum``: per-sequence sum, then the batch mean (SEDD's official loss)."""
    masked = loss_per_token * loss_mask
    if reduction == "sequence_sum":
        return masked.sum(-1).mean()
    denom = num_items_in_batch if num_items_in_batch is not None else loss_mask.sum()
    if torch.is_tensor(denom):
        denom = denom.to(masked.device)
    return masked.sum() / denom


__all__ = ["reduce_loss"]
