"""SEDD's samplers (official ``sampling.py``): Euler and analytic (Tweedie) tau-leaping, and the
final denoising step. They read the log concrete score at sigma(t)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Sampler, SamplerOutput, register_sampler
from .categorical import sample_categorical


@register_sampler
class EulerSampler(Sampler):
    """x_s ~ onehot(x_t) + (t - s) dsigma(t) Q-bar_t(x_t, .), Q-bar the learned reverse rate (SEDD eq. 17)."""

    name = "euler"
    needs = "log_score"

    def step(self, model_output, x_t, t, s, generator=None, uniform_noise=None):
        level = self.schedule(t)
        score = model_output.exp()
        rate = ((t - s) * level.dsigma)[:, None, None] * self.graph.reverse_rate(x_t, score)
        probs = F.one_hot(x_t, self.graph.vocab_size).to(rate) + rate
        return SamplerOutput(sample_categorical(probs, generator, uniform_noise), probs)

    def denoise(self, model_output, x_t, t, generator=None, uniform_noise=None):
        return tweedie_denoise(self.graph, self.schedule, model_output, x_t, t, generator, uniform_noise)


@register_sampler
class AnalyticSampler(Sampler):
    """Tweedie tau-leaping (SEDD eq. 19): p(x_s | x_t) ~ [exp(-dsigma Q) s_theta] * exp(dsigma Q)(x_t, .),
    dsigma = sigma(t) - sigma(s). For the absorbing graph with the exact score this is the exact
    posterior."""

    name = "analytic"
    needs = "log_score"

    def step(self, model_output, x_t, t, s, generator=None, uniform_noise=None):
        dsigma = (self.schedule.total_noise(t) - self.schedule.total_noise(s))[:, None]
        score = model_output.exp()
        probs = self.graph.staggered_score(score, dsigma) * self.graph.transp_transition(x_t, dsigma)
        return SamplerOutput(sample_categorical(probs, generator, uniform_noise), probs)

    def denoise(self, model_output, x_t, t, generator=None, uniform_noise=None):
        return tweedie_denoise(self.graph, self.schedule, model_output, x_t, t, generator, uniform_noise)


def tweedie_denoise(graph, schedule, model_output, x_t, t, generator=None, uniform_noise=None):
    """The official final step: the analytic step with the whole remaining noise sigma(t). It
    samples (no argmax), and for the absorbing graph drops the mask column so no mask survives."""
    sigma = schedule.total_noise(t)[:, None]
    score = model_output.exp()
    probs = graph.staggered_score(score, sigma) * graph.transp_transition(x_t, sigma)
    if graph.absorbing:
        probs = probs[..., :-1]
    return SamplerOutput(sample_categorical(probs, generator, uniform_noise), probs)
