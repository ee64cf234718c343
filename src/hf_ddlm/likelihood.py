"""Likelihood bounds over a dataset, built on ``model.negative_elbo``.

The diffusion ELBO bounds log p(x) from below, so exp(total NELBO / total tokens) bounds the
perplexity from above: the number the SEDD and MDLM papers report ("PPL <= ...").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class PerplexityBound:
    nelbo: float  # total negative ELBO in nats, summed over sequences
    num_tokens: int  # tokens scored (attention_mask == 1)
    num_sequences: int

    @property
    def nats_per_token(self) -> float:
        return self.nelbo / self.num_tokens

    @property
    def bits_per_token(self) -> float:
        return self.nats_per_token / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats_per_token)


def _batches(data, batch_size):
    """Accepts a tensor [N, L], a `datasets.Dataset` / list of dicts with ``input_ids`` (and
    optionally ``attention_mask``), or an iterable of such batches (e.g. a DataLoader)."""
    if torch.is_tensor(data):
        for i in range(0, data.shape[0], batch_size):
            yield data[i : i + batch_size], None
        return
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, dict):
        for i in range(0, len(data), batch_size):
            rows = data[i : i + batch_size]
            if isinstance(rows, dict):  # a datasets.Dataset slice is a dict of columns
                ids = torch.as_tensor(rows["input_ids"])
                mask = rows.get("attention_mask")
            else:
                ids = torch.stack([torch.as_tensor(r["input_ids"]) for r in rows])
                mask = [r["attention_mask"] for r in rows] if "attention_mask" in rows[0] else None
                mask = None if mask is None else torch.stack([torch.as_tensor(m) for m in mask])
            yield ids, None if mask is None else torch.as_tensor(mask)
        return
    for batch in data:
        yield batch["input_ids"], batch.get("attention_mask")


@torch.no_grad()
def perplexity_bound(
    model,
    data,
    batch_size: int = 8,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    t_min: float | None = None,
    progress_bar: bool = False,
) -> PerplexityBound:
    """Upper bound on the perplexity of ``data`` under ``model``: exp(sum of per-sequence NELBOs /
    number of scored tokens). ``num_samples`` Monte-Carlo draws of t per sequence (the SEDD paper
    used 1000 timesteps for its reported bounds); see ``negative_elbo`` for ``t_min``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    total, tokens, sequences = 0.0, 0, 0
    iterator = _batches(data, batch_size)
    if progress_bar:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc="NELBO")
    try:
        for ids, mask in iterator:
            ids = ids.to(model.device)
            mask = None if mask is None else mask.to(model.device)
            nelbo = model.negative_elbo(
                ids, attention_mask=mask, num_samples=num_samples, generator=generator, t_min=t_min
            )
            total += float(nelbo.double().sum())
            tokens += int(ids.numel() if mask is None else mask.sum())
            sequences += ids.shape[0]
    finally:
        model.train(was_training)
    if tokens == 0:
        raise ValueError("data holds no tokens to score")
    return PerplexityBound(nelbo=total, num_tokens=tokens, num_sequences=sequences)
