"""Ancestral sampling of masked diffusion (MDLM's ``ddpm`` / ``ddpm_cache`` updates)."""

from __future__ import annotations

import torch

from ..processes.graphs import fill_rows_
from .base import LazyProbsOutput, Sampler, SamplerOutput, register_sampler
from .categorical import sample_categorical, sample_categorical_rows


@register_sampler
class AncestralSampler(Sampler):
    """The exact reverse posterior of absorbing diffusion given p_theta(x0 | x_t) (MDLM eq. 7):
    a masked token stays masked with probability m_s / m_t and otherwise becomes y with
    probability p_theta(y) (m_t - m_s) / m_t; unmasked tokens are carried over.

    ``move_chance``: ``"schedule"`` takes m_t = 1 - alpha_t from the model's schedule (MDLM's
    ``ddpm``); ``"linear"`` takes m_t = t, as the official default ``ddpm_cache`` sampler does.
    The weights (``probs``) are left unnormalised, as the official code races them; with
    ``uniform_noise`` the draw is that race. Without it, the same distribution is drawn in two
    stages (reveal, then pick the token), which needs p_theta normalised over the clean tokens (the
    ``log_probs`` contract; SUBS is).
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

        def weights():
            probs = self._p_x0(model_output, x_t).mul_(m_t - m_s)
            probs[..., mask] = m_s[..., 0]
            return probs

        masked = x_t == mask
        if uniform_noise is not None:  # the official race over the weights, draw for draw
            probs = weights()
            return SamplerOutput(sample_categorical_rows(probs, masked, x_t, None, uniform_noise), probs)
        # The same distribution in two stages: a masked token is revealed with probability
        # (m_t - m_s) / m_t (the weights' mass off the mask, p_theta summing to 1 over the clean
        # tokens) and then drawn from p_theta. Only revealed rows touch the vocabulary, so a step
        # that reveals nothing (most of them when steps >> length) costs O(B L), not O(B L V).
        u = torch.rand(x_t.shape, generator=generator, device=x_t.device, dtype=m_t.dtype)
        reveal = masked & (u * m_t[..., 0] < (m_t - m_s)[..., 0])
        x_s = x_t.clone()
        rows = reveal.nonzero(as_tuple=True)
        if rows[0].numel():
            p_x0 = model_output[rows].exp()
            p_x0[:, mask] = 0.0
            x_s[rows] = sample_categorical(p_x0, generator)
        return LazyProbsOutput(x_s, weights)

    def denoise(self, model_output, x_t, t, generator=None, uniform_noise=None):
        """MDLM's noise removal: the argmax of p_theta(x0 | x_t) at t = t_min."""
        return SamplerOutput(model_output.argmax(dim=-1), self._p_x0(model_output, x_t))

    def _p_x0(self, model_output, x_t):
        """exp(log p_theta(x0 | x_t)) with the carry-over rows (unmasked positions) written as their
        one-hot at x_t, which is what SUBS holds there (log-probs 0 and -1e6) and what the step
        does with them. Exponentiating -1e6 instead takes exp's slow underflow path (~15x)."""
        unmasked = x_t != self.graph.mask_token_id
        p_x0 = fill_rows_(fill_rows_(model_output.clone(), unmasked, 0.0).exp_(), unmasked, 0.0)
        rows = unmasked.nonzero(as_tuple=True)
        p_x0[(*rows, x_t[rows])] = 1.0
        return p_x0
