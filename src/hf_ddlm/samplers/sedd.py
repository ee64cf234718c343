"""SEDD's samplers (official ``sampling.py``): Euler and analytic (Tweedie) tau-leaping, and the
final denoising step. They read the log concrete score at sigma(t)."""

from __future__ import annotations

import torch

from .base import LazyProbsOutput, Sampler, SamplerOutput, register_sampler
from .categorical import sample_categorical, sample_categorical_rows


@register_sampler
class EulerSampler(Sampler):
    """x_s ~ onehot(x_t) + (t - s) dsigma(t) Q-bar_t(x_t, .), Q-bar the learned reverse rate (SEDD eq. 17)."""

    name = "euler"
    needs = "log_score"

    def step(self, model_output, x_t, t, s, generator=None, uniform_noise=None):
        level = self.schedule(t)
        step_rate = (t - s) * level.dsigma

        def weights():
            rate = step_rate[:, None, None] * self.graph.reverse_rate(x_t, model_output.exp())
            return rate.scatter_add_(
                -1, x_t.unsqueeze(-1), torch.ones_like(x_t, dtype=rate.dtype).unsqueeze(-1)
            )  # onehot(x_t) + rate

        if self.graph.absorbing and uniform_noise is None:
            # masked row: weight c s_y on y != M and 1 - c sum_y s_y on M (c = (t - s) dsigma)
            return LazyProbsOutput(
                _reveal_absorbing(model_output, x_t, self.graph.mask_token_id, step_rate, False, generator), weights
            )
        probs = weights()
        return SamplerOutput(_race(self.graph, probs, x_t, generator, uniform_noise), probs)

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

        def weights():
            score = model_output.exp()
            return self.graph.staggered_score(score, dsigma).mul_(self.graph.transp_transition(x_t, dsigma))

        if self.graph.absorbing and uniform_noise is None:
            # masked row: weight (e^dsigma - 1) s_y on y != M and s_M - (e^dsigma - 1) sum_y s_y on M
            return LazyProbsOutput(
                _reveal_absorbing(
                    model_output, x_t, self.graph.mask_token_id, torch.expm1(dsigma[:, 0]), True, generator
                ),
                weights,
            )
        probs = weights()
        return SamplerOutput(_race(self.graph, probs, x_t, generator, uniform_noise), probs)

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
    return SamplerOutput(_race(graph, probs, x_t, generator, uniform_noise), probs)


def _reveal_absorbing(model_output, x_t, mask, coef, mask_weight_is_score, generator):
    """A tau-leaping step of the absorbing graph drawn in two stages, for a masked position whose
    weights are coef * s_y on the clean tokens y and W - coef * sum_y s_y on the mask (W = s_M for
    the analytic step, 1 for Euler; the race clips a negative mask weight to 0): reveal with
    probability min(1, coef * sum_y s_y / W), then pick y with probability s_y / sum_y s_y. That is
    the distribution the race over the weights draws from; only masked rows touch the vocabulary
    and only revealed rows are raced. ``coef`` is per sample [B]."""
    masked = (x_t == mask).nonzero(as_tuple=True)
    x_s = x_t.clone()
    if not masked[0].numel():
        return x_s
    score = model_output[masked].exp()  # [n, V]
    total = score[:, mask].clone() if mask_weight_is_score else torch.ones_like(score[:, 0])
    score[:, mask] = 0.0
    reveal_mass = coef.to(score.dtype)[masked[0]] * score.sum(dim=-1)
    u = torch.rand(reveal_mass.shape, generator=generator, device=score.device, dtype=score.dtype)
    reveal = (u * total < reveal_mass).nonzero().squeeze(-1)
    if reveal.numel():
        x_s[masked[0][reveal], masked[1][reveal]] = sample_categorical(score[reveal], generator)
    return x_s


def _race(graph, probs, x_t, generator, uniform_noise):
    """The categorical draw of a step. On the absorbing graph an unmasked position's weights are
    zero except at its own token (its rates and transition are 0), so it keeps it: only masked
    positions are raced."""
    if graph.absorbing:
        return sample_categorical_rows(probs, x_t == graph.mask_token_id, x_t, generator, uniform_noise)
    return sample_categorical(probs, generator, uniform_noise)
