"""Ancestral sampling of masked diffusion (MDLM's ``ddpm`` / ``ddpm_cache`` updates)."""

from __future__ import annotations

import torch

from .base import Sampler, SamplerOutput, register_sampler
from .categorical import sample_categorical


@register_sampler
class AncestralSampler(Sampler):
    """The exact reverse posterior of absorbing diffusion given p_theta(x0 | x_t) (MDLM eq. 7):
    a masked token stays masked with probability m_s / m_t and otherwise becomes y with
    probability p_theta(y) (m_t - m_s) / m_t; unmasked tokens are carried over.

    ``move_chance``: ``"schedule"`` takes m_t = 1 - alpha_t from the model's schedule (MDLM's
    ``ddpm``); ``"linear"`` takes m_t = t, as the official default ``ddpm_cache`` sampler does.
    The weights are left unnormalised (divided by nothing), exactly as the official code races them.
    """

    name = "ancestral"
    needs = "log_probs"

    def __init__(self, graph, schedule, move_chance: str = "schedule"):
        super().__init__(graph, schedule)
        if not graph.absorbing:
            raise ValueError("the ancestral sampler needs an absorbing graph")
        if move_chance not in ("schedule", "linear"):
            raise ValueError(f"move_chance must be 'schedule' or 'linear', got {move_chance!r}")
        self.move_chance = move_chance

    def _move_chance(self, t):
        if self.move_chance == "linear":
            return t
        return -torch.expm1(-self.schedule.total_noise(t))

    def step(self, model_output, x_t, t, s, generator=None, uniform_noise=None):
        m_t, m_s = self._move_chance(t)[:, None, None], self._move_chance(s)[:, None, None]
        mask = self.graph.mask_token_id
        probs = model_output.exp() * (m_t - m_s)
        probs[..., mask] = m_s[..., 0]
        x_s = sample_categorical(probs, generator, uniform_noise)
        return SamplerOutput(torch.where(x_t != mask, x_t, x_s), probs)

    def denoise(self, model_output, x_t, t, generator=None, uniform_noise=None):
        """MDLM's noise removal: the argmax of p_theta(x0 | x_t) at t = t_min."""
        return SamplerOutput(model_output.argmax(dim=-1), model_output.exp())
