"""Small helpers for training hf_ddlm models with the stock ``transformers.Trainer``.

No custom trainer is needed: ``forward(input_ids, labels)`` draws t and x_t itself (from torch's
global RNG, which Trainer checkpoints save and restore, so a resumed run is bit-identical) and
returns the loss. What this module adds:

* :class:`DiffusionDataCollator`: pads variable-length rows, puts ``-100`` in ``labels`` and ``0``
  in ``attention_mask`` on padding, so padding is never noised, never scored and never attended to.
  Equal-length rows (``hf_ddlm.data.chunk_dataset``) need no collator at all.
* :class:`EMACallback`: the exponential moving average of the weights that the official SEDD and
  MDLM recipes evaluate and sample with (decay 0.9999), saved as ``ema.safetensors`` inside every
  Trainer checkpoint and restored on resume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback
from transformers.utils import logging

logger = logging.get_logger(__name__)

EMA_WEIGHTS_NAME = "ema.safetensors"


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


class EMACallback(TrainerCallback):
    """Exponential moving average of the trainable weights, theta_ema <- d theta_ema + (1 - d) theta,
    after every optimizer step (the official recipes use d = 0.9999).

    The average is kept in float32 next to the model, written as ``ema.safetensors`` into each
    Trainer checkpoint, and read back from ``<output_dir>/checkpoint-<step>`` when training
    resumes (or from ``resume_from`` if given), so resuming continues the same average.
    Call :meth:`copy_to` to load the averaged weights into a model for evaluation or sampling.
    """

    def __init__(self, decay: float = 0.9999, resume_from: str | os.PathLike | None = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.resume_from = resume_from
        self.shadow: dict[str, torch.Tensor] | None = None

    def _params(self, model):
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        params = self._params(model)
        self.shadow = {n: p.detach().float().clone() for n, p in params.items()}
        folder = self.resume_from
        if folder is None and state.global_step > 0:
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if folder is None:
            return
        path = os.path.join(folder, EMA_WEIGHTS_NAME)
        if not os.path.isfile(path):
            logger.warning(
                f"EMACallback: no {EMA_WEIGHTS_NAME} in {folder}; the average restarts from the current weights"
            )
            return
        saved = load_file(path)
        if set(saved) != set(self.shadow):
            raise ValueError(
                f"{path} holds weights {sorted(set(saved) ^ set(self.shadow))} that the model does not match"
            )
        for name, tensor in saved.items():
            self.shadow[name].copy_(tensor)

    @torch.no_grad()
    def on_step_end(self, args, state, control, model=None, **kwargs):
        # on_step_end fires once per optimizer step (after the accumulated micro-batches)
        for name, p in self._params(model).items():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - self.decay)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or self.shadow is None:
            return
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        os.makedirs(folder, exist_ok=True)
        save_file({n: t.contiguous().cpu() for n, t in self.shadow.items()}, os.path.join(folder, EMA_WEIGHTS_NAME))

    @torch.no_grad()
    def copy_to(self, model) -> None:
        """Overwrite ``model``'s trainable weights with the moving average."""
        if self.shadow is None:
            raise ValueError("the EMA is empty: copy_to needs a training run first")
        for name, p in self._params(model).items():
            p.copy_(self.shadow[name].to(p.dtype))


__all__ = ["DiffusionDataCollator", "EMACallback", "EMA_WEIGHTS_NAME"]
