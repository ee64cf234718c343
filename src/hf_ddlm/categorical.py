"""Categorical draws and the finite log 0 shared by the losses, the parameterizations and the samplers.

One module, with no hf_ddlm imports: ``processes`` and ``parameterizations`` use ``fill_rows_`` and
``NEG_INFINITY``, and the samplers (which import ``processes``) use the draws, so a home inside
``samplers`` would close an import cycle.

* ``sample_categorical``: the official codes' exponential race over unnormalised weights;
  ``sample_categorical_rows`` / ``race_moving_rows`` run it on the rows that can move only;
* ``draw_categorical_rows``: one draw per selected row by inverse CDF (one uniform per row);
* ``reveal_absorbing`` / ``draw_revealed_``: the two-stage draw of an absorbing step (reveal, then
  pick the token), which touches the vocabulary only on revealed rows;
* ``official_nucleus``: bd3lms' nucleus filter; ``filter_logits``: temperature, top-k and HF's top-p.
"""

from __future__ import annotations

import torch

NEG_INFINITY = -1e6  # a finite log 0 (MDLM's "-inf"): exp underflows to exactly 0, gradients stay finite


def neg_infinity(dtype: torch.dtype) -> float:
    """The finite log 0 of ``dtype``: the official -1e6 wherever the dtype holds it with room to
    spare (float32, float64, bfloat16: float32 results stay bitwise those of the official codes),
    else half the dtype's finite minimum (float16: -32752, since -1e6 overflows it), which leaves
    room to add a logit without reaching -inf. exp of either underflows to exactly 0."""
    if not dtype.is_floating_point:
        return NEG_INFINITY
    finite_min = torch.finfo(dtype).min
    return NEG_INFINITY if finite_min < 1e3 * NEG_INFINITY else finite_min / 2


def fill_rows_(tensor: torch.Tensor, rows: torch.Tensor, value: float) -> torch.Tensor:
    """tensor[rows] = value in place for a [..., V] tensor and a boolean [...] row selection."""
    # index_fill_ on the row view: much faster than a broadcast masked_fill_ (which torch.compile and
    # torch.export take instead: the row indices have a data-dependent shape)
    if tensor.is_contiguous() and not torch.compiler.is_compiling():
        tensor.view(-1, tensor.shape[-1]).index_fill_(0, rows.reshape(-1).nonzero().squeeze(-1), value)
    else:
        tensor.masked_fill_(rows.unsqueeze(-1), value)
    return tensor


def sample_categorical(
    probs: torch.Tensor, generator: torch.Generator | None = None, uniform_noise: torch.Tensor | None = None
) -> torch.Tensor:
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


def sample_categorical_rows(
    probs: torch.Tensor,
    rows: torch.Tensor,
    fallback: torch.Tensor,
    generator: torch.Generator | None = None,
    uniform_noise: torch.Tensor | None = None,
) -> torch.Tensor:
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


def race_moving_rows(
    graph, probs: torch.Tensor, x_t: torch.Tensor, generator: torch.Generator | None, uniform_noise: torch.Tensor | None
) -> torch.Tensor:
    """The categorical draw of a step over the weights ``probs`` [B, L, V]. On the absorbing graph an
    unmasked position's weights are zero except at its own token (its rates and transition are 0),
    so it keeps it: only masked positions are raced."""
    if graph.absorbing:
        return sample_categorical_rows(probs, x_t == graph.mask_token_id, x_t, generator, uniform_noise)
    return sample_categorical(probs, generator, uniform_noise)


def draw_categorical_rows(
    log_w: torch.Tensor,
    rows: torch.Tensor,
    generator: torch.Generator | None,
    uniform_noise: torch.Tensor | None,
    exclude: torch.Tensor | None = None,
    log_shift: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """One categorical draw from log-weights for each selected position, on those rows only. By
    inverse CDF (one uniform per row, not one per token: a cumulative sum and a binary search); with
    ``uniform_noise`` (tests, goldens) by the shared exponential race on that noise instead.
    ``exclude`` [n]: a token per row that is not a target; ``log_shift`` (idx [n], shift [n]): a
    log-weight added at one token per row (D3PM's mixture weights)."""
    log_w = log_w[rows].float()  # ``rows`` is a boolean mask over positions: this is a copy, edited in place below
    if exclude is not None:
        log_w.scatter_(-1, exclude.unsqueeze(-1), float("-inf"))
    if log_shift is not None:
        idx, shift = log_shift
        log_w.scatter_add_(-1, idx.unsqueeze(-1), shift.unsqueeze(-1))
    if uniform_noise is not None:
        return sample_categorical(torch.softmax(log_w, dim=-1), generator, uniform_noise[rows])
    cdf = torch.cumsum(log_w.sub_(log_w.max(-1, keepdim=True).values).exp_(), dim=-1)
    u = torch.rand((*cdf.shape[:-1], 1), generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[..., -1:]
    return torch.searchsorted(cdf, u).squeeze(-1).clamp_max(cdf.shape[-1] - 1)


def draw_revealed_(
    x_s: torch.Tensor,
    rows: tuple[torch.Tensor, ...],
    weights: torch.Tensor,
    mask_token_id: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The second stage of a two-stage absorbing draw, in place: each revealed position (the index
    tuple ``rows``) takes a clean token drawn from its unnormalised ``weights`` [n, V] (the mask
    column is zeroed here, in place)."""
    if rows[0].numel():
        weights[:, mask_token_id] = 0.0
        x_s[rows] = sample_categorical(weights, generator)
    return x_s


def reveal_absorbing(
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    mask_token_id: int,
    coef: torch.Tensor,
    mask_weight_is_score: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """A tau-leaping step of the absorbing graph drawn in two stages, for a masked position whose
    weights are coef * s_y on the clean tokens y and W - coef * sum_y s_y on the mask (W = s_M for
    the analytic step, 1 for Euler; the race clips a negative mask weight to 0): reveal with
    probability min(1, coef * sum_y s_y / W), then pick y with probability s_y / sum_y s_y. That is
    the distribution the race over the weights draws from; only masked rows touch the vocabulary
    and only revealed rows are raced. ``model_output`` is log s [B, L, V]; ``coef`` is per sample [B]."""
    masked = (x_t == mask_token_id).nonzero(as_tuple=True)
    x_s = x_t.clone()
    if not masked[0].numel():
        return x_s
    score = model_output[masked].exp()  # [n, V]
    total = score[:, mask_token_id].clone() if mask_weight_is_score else torch.ones_like(score[:, 0])
    score[:, mask_token_id] = 0.0
    reveal_mass = coef.to(score.dtype)[masked[0]] * score.sum(dim=-1)
    u = torch.rand(reveal_mass.shape, generator=generator, device=score.device, dtype=score.dtype)
    reveal = (u * total < reveal_mass).nonzero().squeeze(-1)
    return draw_revealed_(x_s, (masked[0][reveal], masked[1][reveal]), score[reveal], mask_token_id, generator)


def official_nucleus(probs: torch.Tensor, p: float) -> torch.Tensor:
    """bd3lms ``_nucleus_sample``: sort descending, keep the entries whose cumulative mass is <= p
    (and always the most likely one), renormalise. Unlike HF's ``top_p`` (``filter_logits``) the
    token that crosses p is dropped, so the kept mass can be below p."""
    if p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep = sorted_probs.cumsum(dim=-1) <= p
    keep[..., 0] = True
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs * keep)
    return kept / kept.sum(dim=-1, keepdim=True)


def check_nucleus_p(nucleus_p: float) -> float:
    if not isinstance(nucleus_p, (int, float)) or isinstance(nucleus_p, bool) or not 0.0 < nucleus_p <= 1.0:
        raise ValueError(f"nucleus_p must be a number in (0, 1], got {nucleus_p!r}")
    return float(nucleus_p)


def filter_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
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


__all__ = [
    "NEG_INFINITY",
    "neg_infinity",
    "check_nucleus_p",
    "draw_categorical_rows",
    "draw_revealed_",
    "fill_rows_",
    "filter_logits",
    "official_nucleus",
    "race_moving_rows",
    "reveal_absorbing",
    "sample_categorical",
    "sample_categorical_rows",
]
