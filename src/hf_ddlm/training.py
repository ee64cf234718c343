"""Small helpers for training hf_ddlm models with the stock ``transformers.Trainer``.

No custom trainer is needed: ``forward(input_ids, labels)`` draws t and x_t itself (from torch's
global RNG, which Trainer checkpoints save and restore, so a resumed run is bit-identical) and
returns the loss. Variable-length rows are batched by :class:`hf_ddlm.data.DiffusionDataCollator`.
What this module adds is :class:`EMACallback`: the exponential moving average of the weights that
the official SEDD and MDLM recipes evaluate and sample with (decay 0.9999), saved as
``ema.safetensors`` inside every Trainer checkpoint and restored on resume.
"""

from __future__ import annotations

import os

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback
from transformers.utils import logging

from .export.atomic import atomic_path

logger = logging.get_logger(__name__)

EMA_WEIGHTS_NAME = "ema.safetensors"


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
        # atomically, as every file hf_ddlm writes: a killed save leaves the old file or the new one
        with atomic_path(os.path.join(folder, EMA_WEIGHTS_NAME)) as tmp:
            save_file({n: t.contiguous().cpu() for n, t in self.shadow.items()}, str(tmp))

    @torch.no_grad()
    def copy_to(self, model) -> None:
        """Overwrite ``model``'s trainable weights with the moving average."""
        if self.shadow is None:
            raise ValueError("the EMA is empty: copy_to needs a training run first")
        for name, p in self._params(model).items():
            p.copy_(self.shadow[name].to(p.dtype))


__all__ = ["EMACallback", "EMA_WEIGHTS_NAME"]
