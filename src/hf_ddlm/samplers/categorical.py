"""Sampling from unnormalised categorical weights, and the usual logit filters."""

from __future__ import annotations

import torch


def sample_categorical(probs: torch.Tensor, generator=None, uniform_noise=None) -> torch.Tensor:
    """argmax_y p_y / E_y with E_y = 1e-10 - log(u_y + 1e-10) ~ Exp(1): an exponential race.

    The official codes' sampler: ``probs`` may be unnormalised, and negative entries never win
    (they act as 0). ``uniform_noise`` (u, same shape) makes a draw reproducible.
    """
    if uniform_noise is None:
        # our own draw: the same float operations, in place in one [..., V] buffer
        race = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
        race.add_(1e-10).log_().neg_().add_(1e-10)  # -log(u + 1e-10) + 1e-10 == 1e-10 - log(u + 1e-10)
        return torch.div(probs.detach(), race, out=race).argmax(dim=-1)
    gumbel_norm = (1e-10 - (uniform_noise + 1e-10).log()).to(probs.dtype)
    return (probs / gumbel_norm).argmax(dim=-1)


def sample_categorical_rows(probs, rows, fallback, generator=None, uniform_noise=None) -> torch.Tensor:
    """``sample_categorical`` on the rows where the boolean ``rows`` [...] is True; ``fallback``
    [...] elsewhere. For the absorbing graph only masked positions can move, so racing the others
    (the bulk of the cost: a uniform draw over [B, L, V]) is skipped. With ``uniform_noise`` (of the
    full shape) every row is raced as before, so supplied noise reproduces the full draw."""
    if uniform_noise is not None:
        return torch.where(rows, sample_categorical(probs, generator, uniform_noise), fallback)
    out = fallback.clone()
    index = rows.nonzero(as_tuple=True)
    if index[0].numel():
        out[index] = sample_categorical(probs[index], generator)
    return out


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None):
    """Temperature, top-k and HF-style top-p (nucleus) on the last dim; filtered entries are -inf.

    top-p keeps the smallest set of most likely tokens whose mass reaches ``top_p`` (the token that
    crosses the threshold is kept), as ``transformers.TopPLogitsWarper`` does.
    """
    if temperature != 1.0:
        logits = logits / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove = cum - sorted_logits.softmax(-1) >= top_p  # mass before this token already reached top_p
        remove[..., 0] = False
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits
