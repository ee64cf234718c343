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
from ..modeling_utils import DiffusionLMOutput, DiffusionPreTrainedModel, reduce_loss
from .configuration_ctmc import CTMCConfig


class CTMCPreTrainedModel(DiffusionPreTrainedModel):
    config_class = CTMCConfig


class CTMCForDiffusionLM(CTMCPreTrainedModel, DiffusionGenerationMixin):
    """``logits`` are log p~(x0 | x_t) [B, L, V] (absorbing: never the mask, unmasked tokens copied);
    ``loss`` is L_CT (``config.ctmc_estimator``) + ``hybrid_loss_coeff`` x CE."""

    default_sampler = "tau_leaping"
    model_output_kind = "log_probs"

    def __init__(self, config: CTMCConfig):
        super().__init__(config)
        self.post_init()

    def backbone_conditioning(self, level):
        # sigma(1) is infinite when alpha_1 = 0 (log-linear, eps = 0); the clamp keeps the sinusoidal
        # features finite (sigma > 50 means alpha < 2e-22 anyway)
        return level.sigma.clamp_max(50.0) if self.config.time_conditioning else torch.zeros_like(level.sigma)

    def parameterize(self, logits, x_t, level):
        if self.graph.absorbing:
            return subs_log_probs(logits, x_t, self.graph.mask_token_id)
        return torch.log_softmax(logits, dim=-1)

    def _ce(self, output, x0):
        return -torch.gather(output.float(), -1, x0.unsqueeze(-1)).squeeze(-1)

    def loss_per_token(self, output, x0, x_t, level):
        loss = ctmc_exact_elbo(output, x0, x_t, level, self.graph)
        return loss + self.config.hybrid_loss_coeff * self._ce(output, x0) if self.config.hybrid_loss_coeff else loss

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        timesteps=None,
        labels=None,
        position_ids=None,
        return_dict=None,
        generator=None,
        num_items_in_batch=None,
        **kwargs,
    ):
        r"""As ``DiffusionPreTrainedModel.forward``. With ``ctmc_estimator="one_pass"`` and `labels`,
        the network input is x~: x_t ~ q_t(.|x0) followed by one forward jump (drawn here when
        `timesteps` is None; otherwise `input_ids` is taken to be x~)."""
        if self.config.ctmc_estimator != "one_pass" or labels is None:
            return super().forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                timesteps=timesteps,
                labels=labels,
                position_ids=position_ids,
                return_dict=return_dict,
                generator=generator,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        self._check_ids(labels, "labels", allow_mask=False)
        loss_mask = labels != -100
        if attention_mask is not None and attention_mask.dim() == 2:
            loss_mask = loss_mask & attention_mask.bool()
        clean = input_ids if input_ids is not None else torch.zeros_like(labels)
        x0 = torch.where(labels != -100, labels, clean)
        if timesteps is None:
            t = self.time_sampler(labels.shape[0], device=labels.device, generator=generator)
            x_t = torch.where(loss_mask, self.graph.sample_xt(x0, self.schedule(t).sigma, generator=generator), x0)
            x_tilde = forward_jump(x_t, loss_mask, self.graph, generator)
        else:
            if input_ids is None:
                raise ValueError("with timesteps, input_ids (the noisy state x~) is required")
            t, x_tilde = timesteps, input_ids
        out = super().forward(input_ids=x_tilde, attention_mask=attention_mask, timesteps=t, position_ids=position_ids)
        x0 = torch.where(loss_mask, x0, x_tilde)
        level = self.schedule(out.timesteps)
        per_token = ctmc_one_pass_loss(out.logits, x0, x_tilde, level, self.graph, loss_mask)
        if self.config.hybrid_loss_coeff:
            per_token = per_token + self.config.hybrid_loss_coeff * self._ce(out.logits, x0) * loss_mask
        loss = reduce_loss(per_token, loss_mask, self.config.loss_reduction, num_items_in_batch)
        out = DiffusionLMOutput(
            loss=loss, logits=out.logits, loss_per_token=per_token, timesteps=out.timesteps, noisy_input_ids=x_tilde
        )
        return out.to_tuple() if return_dict is False else out

    @torch.no_grad()
    def negative_elbo(self, input_ids, attention_mask=None, num_samples: int = 1, generator=None, t_min=None):
        """Upper bound on -log p(input_ids), in nats per sequence ([B]):

            KL(q_1(.|x0) || p_ref) + int_{t_min}^1 E[CT-ELBO integrand] dt + E[-sum_d log p~(x0^d | x_{t_min})],

        the integral by ``num_samples`` stratified draws of t (each with its own x_t), the last term
        (the final denoising step as the decoder) by one draw of x_{t_min} per sample. p_ref is the
        sampler's prior (uniform, or all-mask). ``t_min`` defaults to ``sampling_eps``."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        self._check_ids(input_ids, "input_ids", allow_mask=False)
        t_min = self.config.sampling_eps if t_min is None else t_min
        if not 0.0 < t_min < 1.0:
            raise ValueError(f"t_min must be in (0, 1) (the decoder runs at t_min), got {t_min}")
        b, dev = input_ids.shape[0], input_ids.device
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        alpha_1 = self.schedule(torch.ones(b, device=dev)).alpha.double()
        total = (prior_kl(input_ids, alpha_1, 1 - alpha_1, self.graph) * mask).double().sum(-1)
        acc = torch.zeros(b, dtype=torch.float64, device=dev)
        t_low = torch.full((b,), t_min, device=dev)
        for k in range(num_samples):
            u = torch.rand(b, generator=generator, device=dev)
            t = t_min + (1 - t_min) * (k + u) / num_samples
            level = self.schedule(t)
            x_t = torch.where(mask, self.graph.sample_xt(input_ids, level.sigma, generator=generator), input_ids)
            out = self(input_ids=x_t, attention_mask=attention_mask, timesteps=t)
            acc += (1 - t_min) * (ctmc_exact_elbo(out.logits, input_ids, x_t, level, self.graph) * mask).double().sum(
                -1
            )
            x_low = torch.where(
                mask, self.graph.sample_xt(input_ids, self.schedule(t_low).sigma, generator=generator), input_ids
            )
            low = self(input_ids=x_low, attention_mask=attention_mask, timesteps=t_low).logits
            acc += (self._ce(low, input_ids) * mask).double().sum(-1)
        return (total + acc / num_samples).float()


__all__ = ["CTMCForDiffusionLM", "CTMCPreTrainedModel"]
