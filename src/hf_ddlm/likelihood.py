"""Likelihood bounds: the Monte-Carlo ELBO of one sequence (``LikelihoodMixin.negative_elbo``) and
the perplexity bound over a dataset (``perplexity_bound``).

The diffusion ELBO bounds log p(x) from below, so exp(total NELBO / total tokens) bounds the
perplexity from above: the number the SEDD and MDLM papers report ("PPL <= ...").
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch


class LikelihoodMixin:
    """``negative_elbo``: the stratified Monte-Carlo estimate of the NELBO, written once.

    NELBO(x0) = prior(x0) + E_t[term(x0, t)], with t drawn once in each of ``num_samples`` strata
    (unbiased, lower variance than i.i.d. draws). A method supplies its pieces:

    * ``elbo_t_min(t_min)``: the checked lower end of the time range;
    * ``elbo_time(k, num_samples, batch_size, t_min, generator, device)``: the draw in stratum k;
    * ``elbo_prior_term(x0, mask)``: KL(q(x_1 | x0) || p_prior) where the method's bound has it;
    * ``elbo_term(x0, attention_mask, mask, t, t_min, generator)``: the integrand at t, x_t drawn inside.
    """

    def elbo_t_min(self, t_min: float | None) -> float | None:
        t_min = self.config.sampling_eps if t_min is None else t_min
        if not 0.0 <= t_min < 1.0:
            raise ValueError(f"t_min must be in [0, 1), got {t_min}")
        return t_min

    def elbo_time(self, k: int, num_samples: int, batch_size: int, t_min, generator, device) -> torch.Tensor:
        u = torch.rand(batch_size, generator=generator, device=device)
        return t_min + (1 - t_min) * (k + u) / num_samples

    def elbo_prior_term(self, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B] float64. Zero by default: MDLM's and SEDD's bounds, as their official evaluation computes
        them, have no prior term KL(q(x_1 | x0) || prior) (small when sigma(1) is large)."""
        return torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)

    def elbo_term(self, x0, attention_mask, mask, t, t_min, generator) -> torch.Tensor:
        """The model's own training loss at a given t: sum_l of the per-token NELBO, [B] in float64."""
        t = t.clamp(1e-6, 1 - 1e-6)  # sigma(1) is infinite when the schedule has no eps
        labels = x0 if attention_mask is None else x0.masked_fill(attention_mask == 0, -100)
        x_t = torch.where(mask, self.graph.sample_xt(x0, self.schedule(t).sigma, generator=generator), x0)
        out = self(input_ids=x_t, attention_mask=attention_mask, timesteps=t, labels=labels)
        return out.loss_per_token.double().sum(-1)

    @torch.no_grad()
    def negative_elbo(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        t_min: float | None = None,
    ) -> torch.Tensor:
        """Monte-Carlo upper bound on -log p(input_ids), in nats, per sequence ([B], float32).

        Averages ``num_samples`` draws of t, stratified over [t_min, 1] (one draw per stratum, so
        the estimate stays unbiased with lower variance), each with a fresh x_t. Padding
        (``attention_mask == 0``) is neither noised nor scored. ``t_min`` defaults to the training
        ``sampling_eps``; 0 integrates the whole of [0, 1] (methods whose bound needs t_min > 0, or
        that have discrete time, say so).
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        num_samples = int(num_samples)
        self._check_ids(input_ids, "input_ids", allow_mask=False)
        if attention_mask is not None and (
            not torch.is_tensor(attention_mask) or attention_mask.shape != input_ids.shape
        ):
            shape = tuple(attention_mask.shape) if torch.is_tensor(attention_mask) else type(attention_mask).__name__
            raise ValueError(
                f"attention_mask must be [batch, length] = [{', '.join(map(str, input_ids.shape))}] "
                f"(the shape of input_ids, 1 for the tokens to score), got {shape}"
            )
        t_min = self.elbo_t_min(t_min)
        batch_size, device = input_ids.shape[0], input_ids.device
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        prior = self.elbo_prior_term(input_ids, mask)
        acc = torch.zeros(batch_size, dtype=torch.float64, device=device)
        for k in range(num_samples):
            t = self.elbo_time(k, num_samples, batch_size, t_min, generator, device)
            acc += self.elbo_term(input_ids, attention_mask, mask, t, t_min, generator)
        return (prior + acc / num_samples).float()


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


__all__ = ["LikelihoodMixin", "PerplexityBound", "perplexity_bound"]
