"""The continuous-time framework (tau-LDR) as a Hugging Face model: DDiT backbone + p~(x0 | x_t)
+ the CT-ELBO L_CT, sampled by tau-leaping, its Euler variant or predictor-corrector.

Reverse rates are never S x S: R-hat_t(x, x with d -> y) = R_t(y, x^d) * ratio, where the ratio
p_t(y)/p_t(x^d) implied by p~ is closed form in alpha_t = e^{-sigma(t)} (``graph.log_ratio_from_x0``).
"""

from __future__ import annotations

import torch

from ...generation.mixin import DiffusionGenerationMixin
from ...objectives.ctmc import ctmc_exact_elbo, ctmc_one_pass_loss, forward_jump
from ...parameterizations import subs_log_probs
from ...processes.discrete_time import prior_kl
from ..modeling_utils import DiffusionPreTrainedModel
from .configuration_ctmc import CTMCConfig


class CTMCPreTrainedModel(DiffusionPreTrainedModel):
    config_class = CTMCConfig


class CTMCForDiffusionLM(CTMCPreTrainedModel, DiffusionGenerationMixin):
    """``logits`` are log p~(x0 | x_t) [B, L, V] (absorbing: never the mask, unmasked tokens copied);
    ``loss`` is L_CT (``config.ctmc_estimator``) + ``hybrid_loss_coeff`` x CE."""

    default_sampler = "tau_leaping"
    model_output_kind = "log_probs"
    # sigma(1) is infinite when alpha_1 = 0 (log-linear, eps = 0); the cap keeps the sinusoidal
    # features finite (sigma > 50 means alpha < 2e-22 anyway)
    max_conditioning_sigma = 50.0

    def __init__(self, config: CTMCConfig):
        super().__init__(config)
        self.post_init()

    def parameterize(self, logits, x_t, level):
        if self.graph.absorbing:
            return subs_log_probs(logits, x_t, self.graph.mask_token_id)
        return torch.log_softmax(logits, dim=-1)

    def _ce(self, output, x0):
        return -torch.gather(output.float(), -1, x0.unsqueeze(-1)).squeeze(-1)

    def prepare_noisy_inputs(self, x0, loss_mask, generator=None):
        """x_t ~ q_t(. | x0); with ``ctmc_estimator="one_pass"`` followed by one forward jump, and
        the network input is that x~ (tau-LDR's one-forward-pass estimator)."""
        noisy = super().prepare_noisy_inputs(x0, loss_mask, generator)
        if self.config.ctmc_estimator == "one_pass":
            noisy.x_t = forward_jump(noisy.x_t, loss_mask, self.graph, generator)
        return noisy

    def loss_per_token(self, output, x0, x_t, level, noisy):
        """L_CT per token: the exact sum over the one-token changes y of x_t, or the one-pass
        estimate at x~ (``config.ctmc_estimator``); plus ``hybrid_loss_coeff`` x CE."""
        if self.config.ctmc_estimator == "one_pass":
            loss = ctmc_one_pass_loss(output, x0, x_t, level, self.graph, noisy.loss_mask)
        else:
            loss = ctmc_exact_elbo(output, x0, x_t, level, self.graph)
        return loss + self.config.hybrid_loss_coeff * self._ce(output, x0) if self.config.hybrid_loss_coeff else loss

    # --- the bound (``LikelihoodMixin.negative_elbo``) -------------------------------------------
    # KL(q_1(.|x0) || p_ref) + int_{t_min}^1 E[CT-ELBO integrand] dt + E[-sum_d log p~(x0^d | x_{t_min})]:
    # the integral by stratified draws of t (each with its own x_t), the last term (the final
    # denoising step as the decoder) by one draw of x_{t_min} per sample. p_ref is the sampler's
    # prior (uniform, or all-mask).
    def elbo_t_min(self, t_min):
        t_min = self.config.sampling_eps if t_min is None else t_min
        if not 0.0 < t_min < 1.0:
            raise ValueError(f"t_min must be in (0, 1) (the decoder runs at t_min), got {t_min}")
        return t_min

    def elbo_prior_term(self, x0, mask):
        alpha_1 = self.schedule(torch.ones(x0.shape[0], device=x0.device)).alpha.double()
        return (prior_kl(x0, alpha_1, 1 - alpha_1, self.graph) * mask).double().sum(-1)

    def elbo_term(self, x0, attention_mask, mask, t, t_min, generator):
        level = self.schedule(t)
        x_t = torch.where(mask, self.graph.sample_xt(x0, level.sigma, generator=generator), x0)
        out = self(input_ids=x_t, attention_mask=attention_mask, timesteps=t)
        integrand = (ctmc_exact_elbo(out.logits, x0, x_t, level, self.graph) * mask).double().sum(-1)
        t_low = torch.full_like(t, t_min)
        x_low = torch.where(mask, self.graph.sample_xt(x0, self.schedule(t_low).sigma, generator=generator), x0)
        decoder = self._ce(self(input_ids=x_low, attention_mask=attention_mask, timesteps=t_low).logits, x0) * mask
        return (1 - t_min) * integrand + decoder.double().sum(-1)


__all__ = ["CTMCForDiffusionLM", "CTMCPreTrainedModel"]
