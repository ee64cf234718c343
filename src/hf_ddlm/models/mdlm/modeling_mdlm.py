"""MDLM as a Hugging Face model: DDiT backbone + SUBS parameterization + the 1/t-weighted NELBO.

MDLM is absorbing-state diffusion whose network predicts p_theta(x0 | x_t) (SUBS: never the mask,
and unmasked tokens are copied). Its continuous-time NELBO is a cross-entropy over masked tokens
weighted by -alpha'_t / (1 - alpha_t) (= 1/t for the log-linear schedule). The published model
is not time-conditioned: the backbone sees sigma = 0, so its output can be reused across sampler
steps that change no token.
"""

from __future__ import annotations

from ...generation.mixin import DiffusionGenerationMixin
from ...objectives import masked_diffusion_nelbo
from ...parameterizations import subs_log_probs
from ..adaptation import CausalLMAdaptationMixin
from ..modeling_utils import DiffusionPreTrainedModel
from .configuration_mdlm import MDLMConfig


class MDLMPreTrainedModel(DiffusionPreTrainedModel):
    config_class = MDLMConfig


class MDLMForDiffusionLM(CausalLMAdaptationMixin, MDLMPreTrainedModel, DiffusionGenerationMixin):
    """``logits`` are the SUBS log-probabilities log p_theta(x0 | x_t) [B, L, V]; ``loss`` the
    token-mean NELBO (the official reduction). ``from_causal_lm`` adapts a pretrained causal LM
    (DiffuGPT / DiffuLLaMA: shifted prediction, optional attention-mask annealing)."""

    default_sampler = "ancestral"
    model_output_kind = "log_probs"

    def __init__(self, config: MDLMConfig):
        super().__init__(config)
        self.post_init()

    def parameterize(self, logits, x_t, level):
        return subs_log_probs(logits, x_t, self.config.mask_token_id)

    def loss_per_token(self, output, x0, x_t, level, noisy):
        return masked_diffusion_nelbo(output, x0, self.schedule.masked_nelbo_weight(noisy.timesteps, level))


__all__ = ["MDLMForDiffusionLM", "MDLMPreTrainedModel"]
