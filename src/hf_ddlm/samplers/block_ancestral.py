"""Ancestral sampling of one block of BD3-LM (bd3lms ``_ddpm_caching_update`` without first hitting).

Given p_theta(x0 | x_t) of the block, a masked token stays masked from t to s < t with probability
m_s / m_t (m the mask probability, = t for BD3-LM) and otherwise becomes y with probability
p_theta(y) (1 - m_s / m_t) (MDLM eq. 7); unmasked tokens are carried over. The weights are the
normalised ones of the official code, in float64 (it upcasts p_theta before the Gumbel race, which
avoids the truncation that lowers the effective temperature; Zheng et al. 2024).
"""

from __future__ import annotations

import torch

from .base import Sampler, SamplerOutput, register_sampler
from .categorical import sample_categorical
from .first_hitting import check_nucleus_p, official_nucleus


@register_sampler
class BlockAncestralSampler(Sampler):
    """``nucleus_p``: the official nucleus filter on p_theta (the loop's ``top_p`` is HF's).
    The grid is ``set_timesteps``' 1 = t_0 > ... > t_n = t_min for every block; tokens still masked
    at t_min are set to the argmax of p_theta (``denoise``, MDLM's noise removal)."""

    name = "block_ancestral"
    needs = "log_probs"

    def __init__(self, graph, schedule, nucleus_p: float = 1.0):
        super().__init__(graph, schedule)
        if not graph.absorbing:
            raise ValueError("the block ancestral sampler needs an absorbing graph")
        self.nucleus_p = check_nucleus_p(nucleus_p)

    def step(self, model_output, x_t, t, s, generator=None, uniform_noise=None):
        mask = self.graph.mask_token_id
        stay = (self.schedule(s).mask_prob / self.schedule(t).mask_prob)[:, None, None]  # m_s / m_t
        probs = official_nucleus(model_output.double().exp(), self.nucleus_p) * (1 - stay)
        probs[..., mask] = stay[..., 0].to(probs.dtype)
        x_s = sample_categorical(probs, generator, uniform_noise)
        return SamplerOutput(torch.where(x_t != mask, x_t, x_s), probs)

    def denoise(self, model_output, x_t, t, generator=None, uniform_noise=None):
        x0 = model_output.argmax(dim=-1)
        return SamplerOutput(torch.where(x_t == self.graph.mask_token_id, x0, x_t), model_output.exp())
