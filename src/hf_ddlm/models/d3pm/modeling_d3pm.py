"""D3PM as a Hugging Face model: DDiT backbone + x0 logits + the hybrid loss L_vb + lambda CE.

The network sees x_k and the step k and predicts p~(x0 | x_k); the reverse step p_theta(x_{k-1} | x_k)
is built from it in closed form (``processes.discrete_time``), in the paper's eq. 4 form or the
exact mixture form (``config.reverse_parameterization``). ``forward`` takes ``timesteps = k / T``.
"""

from __future__ import annotations

import torch

from ...categorical import neg_infinity
from ...generation.configuration import DiffusionGenerationConfig
from ...generation.mixin import DiffusionGenerationMixin
from ...objectives.d3pm import d3pm_hybrid_loss, d3pm_vb_term
from ...processes.discrete_time import DiscreteTimeSampler, log_stationary, prior_kl
from ..modeling_utils import DiffusionPreTrainedModel
from .configuration_d3pm import D3PMConfig


class D3PMPreTrainedModel(DiffusionPreTrainedModel):
    config_class = D3PMConfig


class D3PMForDiffusionLM(D3PMPreTrainedModel, DiffusionGenerationMixin):
    """``logits`` are log p~(x0 | x_k) [B, L, V] (never the mask, for absorbing noise); ``loss`` is
    T (L_k + lambda CE_k) for k ~ Uniform{1..T} (see ``objectives.d3pm``)."""

    default_sampler = "d3pm_ancestral"
    model_output_kind = "log_probs"
    zero_time_loss_reason = "D3PM has loss terms for steps k = 1..T only"

    def __init__(self, config: D3PMConfig):
        super().__init__(config)
        self.schedule = config.discrete_schedule()
        self.post_init()

    @property
    def time_sampler(self) -> DiscreteTimeSampler:
        """k ~ Uniform{1..T}, returned as t = k / T."""
        return DiscreteTimeSampler(self.config.num_timesteps, self.config.antithetic_sampling)

    def _default_generation_config(self) -> DiffusionGenerationConfig:
        # T ancestral steps ending at x0: no separate denoising step
        return DiffusionGenerationConfig(
            sampler=self.default_sampler,
            sampler_kwargs={"parameterization": self.config.reverse_parameterization},
            num_inference_steps=self.config.num_timesteps,
            noise_removal=False,
        )

    def backbone_conditioning(self, level):
        # the official networks embed the integer step
        step = level.step.to(level.sigma.dtype)
        return step if self.config.time_conditioning else torch.zeros_like(step)

    def parameterize(self, logits, x_t, level):
        if self.graph.absorbing:  # the mask is never a clean token
            logits = logits.masked_fill(
                torch.arange(logits.shape[-1], device=logits.device) == self.graph.mask_token_id,
                neg_infinity(logits.dtype),
            )
        return torch.log_softmax(logits, dim=-1)

    def _coefficients(self, level):
        k = level.step
        if (k < 1).any():
            raise ValueError("D3PM has loss terms for steps k = 1..T only (timesteps must be > 0)")
        return self.schedule.coefficients(k, k - 1)

    def loss_per_token(self, output, x0, x_t, level, noisy):
        log_pi = log_stationary(self.graph, torch.float32, x0.device)
        return d3pm_hybrid_loss(
            output,
            x0,
            x_t,
            self._coefficients(level),
            log_pi,
            self.config.num_timesteps,
            self.config.hybrid_loss_coeff,
            self.config.reverse_parameterization,
        )

    # --- the bound: prior term + T E_k[L_k] (``LikelihoodMixin.negative_elbo``) ----------------
    def elbo_t_min(self, t_min):
        if t_min is not None:
            raise ValueError("t_min does not apply to D3PM (discrete time); leave it None")
        return None

    def elbo_time(self, k, num_samples, batch_size, t_min, generator, device):
        """The step in stratum k of {1..T}: ``num_samples = T`` visits every step once (the full
        T-step bound)."""
        T = self.config.num_timesteps
        u = torch.rand(batch_size, generator=generator, device=device, dtype=torch.float64)
        return (T * (k + u) / num_samples).floor().long().clamp_max(T - 1) + 1

    def elbo_prior_term(self, x0, mask):
        b, device = x0.shape[0], x0.device
        final = self.schedule.coefficients(
            torch.full((b,), self.config.num_timesteps, device=device), torch.zeros(b, dtype=torch.long, device=device)
        )
        return (prior_kl(x0, final.alpha_t, final.one_minus_alpha_t, self.graph) * mask).double().sum(-1)

    def elbo_term(self, x0, attention_mask, mask, k, t_min, generator):
        """T L_k: the KL of the true posterior q(x_{k-1} | x_k, x0) from p_theta, summed over positions."""
        T = self.config.num_timesteps
        t = (k.double() / T).float()
        x_t = torch.where(mask, self.graph.sample_xt(x0, self.schedule(t).sigma, generator=generator), x0)
        out = self(input_ids=x_t, attention_mask=attention_mask, timesteps=t)
        log_pi = log_stationary(self.graph, torch.float32, x0.device)
        coefficients = self.schedule.coefficients(k, k - 1)
        vb = d3pm_vb_term(out.logits, x0, x_t, coefficients, log_pi, self.config.reverse_parameterization)
        return T * (vb * mask).double().sum(-1)


__all__ = ["D3PMForDiffusionLM", "D3PMPreTrainedModel"]
