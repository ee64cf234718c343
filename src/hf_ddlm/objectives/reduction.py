"""How a per-token loss becomes the scalar the optimiser sees (``config.loss_reduction``)."""

from __future__ import annotations

import torch


def reduce_loss(loss_per_token, loss_mask, reduction, num_items_in_batch=None) -> torch.Tensor:
    """``token_mean``: sum / number of loss tokens (or ``num_items_in_batch`` under gradient
    accumulation). ``sequence_sum``: per-sequence sum, then the batch mean (SEDD's official loss).

    Positions outside ``loss_mask`` are selected away (``where``, not a product: a method's term may
    be NaN or inf there, and NaN * 0 is NaN). A batch without a loss token gives exactly 0, with zero
    gradients, as transformers' causal LMs do: the token count is floored at 1 (0 / 1, not 0 / 0).
    """
    masked = torch.where(loss_mask, loss_per_token, 0.0)
    if reduction == "sequence_sum":
        return masked.sum(-1).mean()
    denom = num_items_in_batch if num_items_in_batch is not None else loss_mask.sum()
    if torch.is_tensor(denom):
        denom = denom.to(masked.device).clamp_min(1)
    else:
        denom = max(denom, 1)
    return masked.sum() / denom


__all__ = ["reduce_loss"]
