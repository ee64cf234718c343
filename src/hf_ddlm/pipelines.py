"""transformers pipelines for hf_ddlm models: ``pipeline("fill-mask")`` and ``pipeline("text-generation")``.

* fill-mask: one denoising call. The masked positions of the input are x_t's masked tokens; the
  model gives log p_theta(x0 | x_t) there (MDLM, BD3-LM, absorbing D3PM / CTMC), or, for the
  absorbing-graph SEDD, the log score, which RADD's theorem makes p0(y) (e^sigma - 1) at a masked
  position, so its softmax over the clean tokens is p0. The time is the fraction of masked tokens
  of each row (the noise level at which that fraction is expected under the log-linear schedule;
  models that are not time-conditioned ignore it). The uniform graph has no mask: refused.
* text-generation: ``generate`` already takes a prompt's ``input_ids`` / ``attention_mask`` and
  ``max_new_tokens`` and returns the sequences with the prompt, which is what the pipeline reads;
  the only obstacle is its check that the model is a causal LM, which logs "not supported".

transformers picks a pipeline class per task, not per model, so ``register_pipelines`` (run on
``import hf_ddlm``) points the two tasks at subclasses that differ from transformers' classes only
for hf_ddlm models; any other model goes through the parent class unchanged. The registry holds
the class as a dotted path, so nothing is imported until a pipeline is built.
"""

from __future__ import annotations

import torch
from transformers.pipelines.fill_mask import FillMaskPipeline
from transformers.pipelines.text_generation import TextGenerationPipeline

from .generation.mixin import DiffusionGenerationMixin

TASKS = {
    "fill-mask": "hf_ddlm.pipelines.DiffusionFillMaskPipeline",
    "text-generation": "hf_ddlm.pipelines.DiffusionTextGenerationPipeline",
}


def _is_diffusion(model) -> bool:
    return isinstance(model, DiffusionGenerationMixin)


class DiffusionFillMaskPipeline(FillMaskPipeline):
    """``FillMaskPipeline`` whose forward, for an hf_ddlm model, is one denoising call (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not _is_diffusion(self.model):
            return
        model = self.model
        if not (model.graph.absorbing and model.model_output_kind in ("log_probs", "log_score")):
            raise ValueError(
                f"fill-mask needs a model on the absorbing graph with a distribution over clean tokens; "
                f"{type(model).__name__} on the {model.config.graph} graph has none"
            )
        mask = getattr(self.tokenizer, "mask_token_id", None)
        if mask != model.graph.mask_token_id:
            raise ValueError(
                f"fill-mask needs a tokenizer whose mask token is the model's (id {model.graph.mask_token_id}), "
                f"got mask_token_id={mask}"
            )

    def _forward(self, model_inputs):
        if not _is_diffusion(self.model):
            return super()._forward(model_inputs)
        input_ids = model_inputs["input_ids"]
        mask = self.model.graph.mask_token_id
        masked = input_ids == mask
        attention = model_inputs.get("attention_mask")
        real = attention.sum(-1) if attention is not None else torch.full_like(input_ids[:, 0], input_ids.shape[1])
        t = (masked.sum(-1).float() / real.clamp_min(1)).clamp(1e-3, 1.0).to(input_ids.device)
        logits = self.model(input_ids=input_ids, attention_mask=attention, timesteps=t).logits.float()
        logits[..., mask] = -torch.inf  # the mask is never a prediction
        return {"logits": logits, "input_ids": input_ids}


class DiffusionTextGenerationPipeline(TextGenerationPipeline):
    """``TextGenerationPipeline`` that accepts hf_ddlm models: their ``generate`` denoises a canvas
    after the prompt (``max_new_tokens`` long) and returns prompt + generated tokens, as a causal
    LM's does."""

    def check_model_type(self, supported_models):
        if _is_diffusion(self.model):
            return
        super().check_model_type(supported_models)


def register_pipelines() -> None:
    """Point transformers' fill-mask and text-generation tasks at the classes above (idempotent;
    other models keep transformers' behaviour)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    for task, impl in TASKS.items():
        entry = PIPELINE_REGISTRY.supported_tasks.get(task)
        if entry is not None:
            entry["impl"] = impl


__all__ = ["DiffusionFillMaskPipeline", "DiffusionTextGenerationPipeline", "TASKS", "register_pipelines"]
