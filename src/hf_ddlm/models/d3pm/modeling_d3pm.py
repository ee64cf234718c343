"""D3PM as a Hugging Face model: DDiT backbone + x0 logits + the hybrid loss L_vb + lambda CE.

The network sees x_k and the step k and predicts p~(x0 | x_k); the reverse step p_theta(x_{k-1} | x_k)
is built from it in closed form (``processes.discrete_time``), in the paper's eq. 4 form or the
exact mixture form (``config.reverse_parameterization``). ``forward`` takes ``timesteps = k / T``.
"""

from __future__ import annotations

import torch

from ...generation.configuration import DiffusionGenerationConfig
from ...generation.mixin import DiffusionGenerationMixin
from ...objectives.d3pm import d3pm_hybrid_loss, d3pm_vb_term
from ...processes.discrete_time import NEG, DiscreteTimeSampler, log_stationary, prior_kl
from ..modeling_utils import DiffusionPreTrainedModel
from .configuration_d3pm import D3PMConfig


class D3PMPreTrainedModel(DiffusionPreTrainedModel):
    config_class = D3PMConfig


class D3PMForDiffusionLM(D3PMPreTrainedModel, DiffusionGenerationMixin):
    """``logits`` are log p~(x0 | x_k) [B, L, V] (never the mask, for absorbing noise); ``loss`` is
    T (L_k + lambda CE_k) for k ~ Uniform{1..T} (see ``objectives.d3pm``)."""

    default_sampler = "d3pm_ancestral"
    model_output_kind = "log_probs"

    def __init__(self, config: D3PMConfig):
        super().__init__(config)
        self.schedule = config.discrete_schedule()
        self.time_sampler = DiscreteTimeSampler(config.num_timesteps, config.antithetic_sampling)
        self.post_init()

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
                torch.arange(logits.shape[-1], device=logits.device) == self.graph.mask_token_id, NEG
            )
        return torch.log_softmax(logits, dim=-1)

    def _coefficients(self, level):
        k = level.step
        if (k < 1).any():
            raise ValueError("D3PM has loss terms for steps k = 1..T only (timesteps must be > 0)")
        return self.schedule.coefficients(k, k - 1)

    def loss_per_token(self, output, x0, x_t, level):
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

    @torch.no_grad()
    def negative_elbo(self, input_ids, attention_mask=None, num_samples: int = 1, generator=None, t_min=None):
        """Upper bound on -log p(input_ids) in nats per sequence ([B]): the prior term plus
        T E_k[L_k], with ``num_samples`` stratified draws of k (``num_samples = T`` visits every k
        once: the full T-step bound). ``t_min`` does not apply to a discrete-time model."""
        if t_min is not None:
            raise ValueError("t_min does not apply to D3PM (discrete time); leave it None")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        self._check_ids(input_ids, "input_ids", allow_mask=False)
        T, b = self.config.num_timesteps, input_ids.shape[0]
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        log_pi = log_stationary(self.graph, torch.float32, input_ids.device)
        final = self.schedule.coefficients(
            torch.full((b,), T, device=input_ids.device), torch.zeros(b, dtype=torch.long, device=input_ids.device)
        )
        total = (prior_kl(input_ids, final.alpha_t, final.one_minus_alpha_t, self.graph) * mask).double().sum(-1)
        diffusion = torch.zeros(b, dtype=torch.float64, device=input_ids.device)
        for j in range(num_samples):
            u = torch.rand(b, generator=generator, device=input_ids.device, dtype=torch.float64)
            k = (T * (j + u) / num_samples).floor().long().clamp_max(T - 1) + 1
            t = (k.double() / T).float()
            x_t = self.graph.sample_xt(input_ids, self.schedule(t).sigma, generator=generator)
            x_t = torch.where(mask, x_t, input_ids)
            out = self(input_ids=x_t, attention_mask=attention_mask, timesteps=t)
            vb = d3pm_vb_term(
                out.logits,
                input_ids,
                x_t,
                self.schedule.coefficients(k, k - 1),
                log_pi,
                self.config.reverse_parameterization,
            )
            diffusion += T * (vb * mask).double().sum(-1)
        return (total + diffusion / num_samples).float()


__all__ = ["D3PMForDiffusionLM", "D3PMPreTrainedModel"]
