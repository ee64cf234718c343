"""Ancestral sampling of masked diffusion: MDLM's ``ddpm`` / ``ddpm_cache`` updates, and BD3-LM's
per-block update (bd3lms ``_ddpm_caching_update`` without first hitting), registered as
``"block_ancestral"``."""

from __future__ import annotations

import torch

from ..categorical import (
    check_nucleus_p,
    draw_revealed_,
    fill_rows_,
    official_nucleus,
    sample_categorical,
    sample_categorical_rows,
)
from ..processes.graphs import Graph
from ..processes.schedules import NoiseSchedule
from .base import LazyProbsOutput, Sampler, SamplerOutput, register_sampler, register_sampler_alias

VARIANTS = ("mdlm", "bd3lm")


@register_sampler
class AncestralSampler(Sampler):
    """The exact reverse posterior of absorbing diffusion given p_theta(x0 | x_t) (MDLM eq. 7):
    a masked token stays masked with probability m_s / m_t and otherwise becomes y with
    probability p_theta(y) (m_t - m_s) / m_t; unmasked tokens are carried over.

    Args:
        move_chance: ``"schedule"`` takes m_t = 1 - alpha_t from the model's schedule (MDLM's
            ``ddpm``); ``"linear"`` takes m_t = t, as the official default ``ddpm_cache`` sampler does.
        variant: whose float operations and draws are reproduced (the distribution is the same).
            ``"mdlm"``: the weights p_theta (m_t - m_s) and m_s (mask) are left unnormalised, as the
            official code races them; with ``uniform_noise`` the draw is that race. Without it, the
            same distribution is drawn in two stages (reveal, then pick the token), which needs
            p_theta normalised over the clean tokens (the ``log_probs`` contract; SUBS is).
            ``"bd3lm"`` (the ``"block_ancestral"`` sampler): the weights p_theta (1 - m_s / m_t) and
            m_s / m_t in float64 (the official code upcasts p_theta before the race, which avoids the
            truncation that lowers the effective temperature; Zheng et al. 2024), one race over every
            position; ``denoise`` sets only the tokens still masked.
        nucleus_p: the official BD3-LM nucleus on p_theta (``"bd3lm"`` only; the loop's ``top_p`` is HF's).
    """

    name = "ancestral"
    needs = "log_probs"

    def __init__(
        self,
        graph: Graph,
        schedule: NoiseSchedule,
        move_chance: str = "schedule",
        variant: str = "mdlm",
        nucleus_p: float = 1.0,
    ):
        super().__init__(graph, schedule)
        if not graph.absorbing:
            raise ValueError("the ancestral sampler needs an absorbing graph")
        if move_chance not in ("schedule", "linear"):
            raise ValueError(f"move_chance must be 'schedule' or 'linear', got {move_chance!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.move_chance = move_chance
        self.variant = variant
        self.nucleus_p = check_nucleus_p(nucleus_p)
        if variant == "mdlm" and self.nucleus_p < 1.0:
            raise ValueError(
                "nucleus_p is the official BD3-LM nucleus: use sampler 'block_ancestral' (variant='bd3lm'), "
                "or top_p for HF's nucleus"
            )

    def _move_chance(self, t: torch.Tensor) -> torch.Tensor:
        if self.move_chance == "linear":
            return t
        return -torch.expm1(-self.schedule.total_noise(t))

    def step(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        s: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        if self.variant == "bd3lm":
            return self._step_bd3lm(model_output, x_t, t, s, generator, uniform_noise)
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
        rows = reveal.nonzero(as_tuple=True)
        x_s = draw_revealed_(x_t.clone(), rows, model_output[rows].exp(), mask, generator)
        return LazyProbsOutput(x_s, weights)

    def _step_bd3lm(self, model_output, x_t, t, s, generator, uniform_noise) -> SamplerOutput:
        mask = self.graph.mask_token_id
        stay = (self._move_chance(s) / self._move_chance(t))[:, None, None]  # m_s / m_t
        probs = official_nucleus(model_output.double().exp(), self.nucleus_p) * (1 - stay)
        probs[..., mask] = stay[..., 0].to(probs.dtype)
        x_s = sample_categorical(probs, generator, uniform_noise)
        return SamplerOutput(torch.where(x_t != mask, x_t, x_s), probs)

    def denoise(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """MDLM's noise removal: the argmax of p_theta(x0 | x_t) at t = t_min."""
        x0 = model_output.argmax(dim=-1)
        if self.variant == "bd3lm":
            return SamplerOutput(torch.where(x_t == self.graph.mask_token_id, x0, x_t), model_output.exp())
        return SamplerOutput(x0, self._p_x0(model_output, x_t))

    def _p_x0(self, model_output: torch.Tensor, x_t: torch.LongTensor) -> torch.Tensor:
        """exp(log p_theta(x0 | x_t)) with the carry-over rows (unmasked positions) written as their
        one-hot at x_t, which is what SUBS holds there (log-probs 0 and -1e6) and what the step
        does with them. Exponentiating -1e6 instead takes exp's slow underflow path (~15x)."""
        unmasked = x_t != self.graph.mask_token_id
        p_x0 = fill_rows_(fill_rows_(model_output.clone(), unmasked, 0.0).exp_(), unmasked, 0.0)
        rows = unmasked.nonzero(as_tuple=True)
        p_x0[(*rows, x_t[rows])] = 1.0
        return p_x0


register_sampler_alias("block_ancestral", "ancestral", variant="bd3lm")

__all__ = ["AncestralSampler", "VARIANTS"]
