"""Stopping criteria of iterative denoising: transformers' ``StoppingCriteria`` read on a canvas.

A criterion is called after every denoising step as ``criterion(input_ids, scores)`` with

* ``input_ids`` [B, L]: the canvas after the step (masked positions still hold the mask id);
* ``scores`` [B, L, V]: log p_theta(x0 | x_t), the distribution over clean tokens the step used
  (after temperature / top-k / top-p; for the absorbing SEDD, its p0 by RADD's theorem);
* optionally ``generated`` [B, L] (bool): the positions being generated (not the prompt, not the
  known tokens of an infilling);

and returns a BoolTensor [B]: the rows that are finished. ``stop_finished_rows`` applies a
``StoppingCriteriaList`` in a loop: a finished row takes its *argmax canvas* (committed tokens kept,
each masked position the argmax of p_theta) and is frozen; once every row is finished the loop ends
and the remaining steps (network calls) are saved.

``StableAndConfidentStoppingCriteria`` is the adaptive stopping of transformers' DiffusionGemma
generation, read for masked diffusion (``generation_config`` fields ``stability_threshold`` and
``confidence_threshold``, as DiffusionGemma's).
"""

from __future__ import annotations

import numbers

import torch
from transformers import StoppingCriteria, StoppingCriteriaList


def argmax_canvas(input_ids: torch.LongTensor, scores: torch.Tensor, mask_token_id: int | None) -> torch.LongTensor:
    """The canvas if decoding stopped now: committed tokens kept, masked positions the argmax of p_theta."""
    if mask_token_id is None:
        return scores.argmax(-1)
    return torch.where(input_ids == mask_token_id, scores.argmax(-1), input_ids)


class StableAndConfidentStoppingCriteria(StoppingCriteria):
    """Stop a row once its canvas is stable and confident (transformers' DiffusionGemma adaptive stopping).

    * stable: the row's argmax canvas (``argmax_canvas``) equals the one of each of the previous
      ``stability_threshold`` steps (0: always stable);
    * confident: the mean over the row's positions of the entropy of p_theta(x0^i | x_t) is below
      ``confidence_threshold`` (nats). A committed position of a masked model carries its token over
      (SUBS: a point mass, entropy 0); with ``mask_token_id`` set it counts 0 whatever the scores
      hold there, so the mean is the masked positions' entropy over the canvas length.

    Stateful (the history of argmax canvases): ``reset()`` before reusing it for another generation
    (``stop_finished_rows`` callers do, through ``reset_criteria``).
    """

    def __init__(self, stability_threshold: int, confidence_threshold: float, mask_token_id: int | None = None):
        if not isinstance(stability_threshold, numbers.Integral) or isinstance(stability_threshold, bool):
            raise ValueError(f"stability_threshold must be a non-negative integer, got {stability_threshold!r}")
        if stability_threshold < 0:
            raise ValueError(f"stability_threshold must be a non-negative integer, got {stability_threshold!r}")
        if (
            not isinstance(confidence_threshold, numbers.Real)
            or isinstance(confidence_threshold, bool)
            or not confidence_threshold > 0
        ):
            raise ValueError(f"confidence_threshold must be a number > 0 (nats), got {confidence_threshold!r}")
        self.stability_threshold = int(stability_threshold)
        self.confidence_threshold = float(confidence_threshold)
        self.mask_token_id = mask_token_id
        self.history: torch.Tensor | None = None  # [stability_threshold, B, L], oldest first

    def reset(self) -> None:
        self.history = None

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.Tensor, generated: torch.Tensor | None = None, **kwargs
    ) -> torch.BoolTensor:
        canvas = argmax_canvas(input_ids, scores, self.mask_token_id)
        if self.stability_threshold == 0:
            stable = torch.ones(canvas.shape[0], dtype=torch.bool, device=canvas.device)
        else:
            if self.history is None or self.history.shape[1:] != canvas.shape:
                # -1 is no token: a row cannot be stable before it has that many steps behind it
                self.history = torch.full((self.stability_threshold, *canvas.shape), -1, device=canvas.device)
            stable = (self.history == canvas[None]).all(-1).all(0)
            self.history = torch.cat([self.history[1:], canvas[None]])
        log_p = scores.float()
        # H = -sum_y p_y log p_y; 0 log 0 = 0 (masked-out tokens hold a finite or infinite log 0)
        entropy = -(log_p.exp() * log_p.clamp_min(torch.finfo(log_p.dtype).min)).sum(-1)
        if self.mask_token_id is not None:
            entropy = entropy.masked_fill(input_ids != self.mask_token_id, 0.0)
        if generated is None:
            mean_entropy = entropy.mean(-1)
        else:
            mean_entropy = (entropy * generated).sum(-1) / generated.sum(-1).clamp_min(1)
        confident = mean_entropy < self.confidence_threshold
        return stable & confident


def prepare_stopping_criteria(
    generation_config, mask_token_id: int | None, stopping_criteria: StoppingCriteriaList | None = None
) -> StoppingCriteriaList | None:
    """The criteria of a generation: the user's ``stopping_criteria`` plus the adaptive stop when
    ``generation_config`` sets ``stability_threshold`` and ``confidence_threshold``; None when empty.
    Every criterion with a ``reset`` is reset (a fresh history per generation)."""
    criteria = StoppingCriteriaList(stopping_criteria or [])
    stability = getattr(generation_config, "stability_threshold", None)
    confidence = getattr(generation_config, "confidence_threshold", None)
    if (stability is None) != (confidence is None):
        raise ValueError(
            "adaptive stopping needs both stability_threshold and confidence_threshold "
            f"(got stability_threshold={stability!r}, confidence_threshold={confidence!r})"
        )
    if stability is not None:
        criteria.append(StableAndConfidentStoppingCriteria(stability, confidence, mask_token_id))
    for criterion in criteria:
        if hasattr(criterion, "reset"):
            criterion.reset()
    return criteria or None


def stop_finished_rows(
    criteria: StoppingCriteriaList,
    x: torch.LongTensor,
    scores: torch.Tensor,
    finished: torch.BoolTensor,
    mask_token_id: int | None,
    generated: torch.Tensor | None = None,
) -> tuple[torch.LongTensor, torch.BoolTensor, torch.BoolTensor]:
    """After a step: rows the criteria finish take their argmax canvas. Returns ``(x, finished,
    newly)``: the canvas, every finished row so far [B], and the rows finished by this call [B]
    (the loop freezes them: it writes them back after every later step). ``generated`` [B, L]: the
    positions being generated, passed on to the criteria."""
    newly = criteria(x, scores, generated=generated) & ~finished
    if newly.any():
        x = torch.where(newly[:, None], argmax_canvas(x, scores, mask_token_id), x)
    return x, finished | newly, newly


__all__ = [
    "StableAndConfidentStoppingCriteria",
    "argmax_canvas",
    "prepare_stopping_criteria",
    "stop_finished_rows",
]
