"""SEDD's analytic sampler (official ``sampling.py``, ``AnalyticPredictor``): Tweedie tau-leaping, and
the final denoising step that both SEDD samplers share. It reads the log concrete score at sigma(t)."""

from __future__ import annotations

import torch

from ..categorical import race_moving_rows, reveal_absorbing
from ..processes.graphs import Graph
from ..processes.schedules import NoiseSchedule
from .base import LazyProbsOutput, Sampler, SamplerOutput, register_sampler


class ScoreSampler(Sampler):
    """SEDD's samplers: they read the log concrete score and end with the same Tweedie denoising step."""

    needs = "log_score"

    def denoise(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        return tweedie_denoise(self.graph, self.schedule, model_output, x_t, t, generator, uniform_noise)


@register_sampler
class AnalyticSampler(ScoreSampler):
    """Tweedie tau-leaping (SEDD eq. 19): p(x_s | x_t) ~ [exp(-dsigma Q) s_theta] * exp(dsigma Q)(x_t, .),
    dsigma = sigma(t) - sigma(s). For the absorbing graph with the exact score this is the exact
    posterior."""

    name = "analytic"

    def step(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        s: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        dsigma = (self.schedule.total_noise(t) - self.schedule.total_noise(s))[:, None]

        def weights():
            score = model_output.exp()
            return self.graph.staggered_score(score, dsigma).mul_(self.graph.transp_transition(x_t, dsigma))

        if self.graph.absorbing and uniform_noise is None:
            # masked row: weight (e^dsigma - 1) s_y on y != M and s_M - (e^dsigma - 1) sum_y s_y on M
            return LazyProbsOutput(
                reveal_absorbing(
                    model_output, x_t, self.graph.mask_token_id, torch.expm1(dsigma[:, 0]), True, generator
                ),
                weights,
            )
        probs = weights()
        return SamplerOutput(race_moving_rows(self.graph, probs, x_t, generator, uniform_noise), probs)


def tweedie_denoise(
    graph: Graph,
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    x_t: torch.LongTensor,
    t: torch.Tensor,
    generator: torch.Generator | None = None,
    uniform_noise: torch.Tensor | None = None,
) -> SamplerOutput:
    """The official final step: the analytic step with the whole remaining noise sigma(t). It
    samples (no argmax), and for the absorbing graph drops the mask column so no mask survives."""
    sigma = schedule.total_noise(t)[:, None]
    score = model_output.exp()
    probs = graph.staggered_score(score, sigma) * graph.transp_transition(x_t, sigma)
    if graph.absorbing:
        probs = probs[..., :-1]
    return SamplerOutput(race_moving_rows(graph, probs, x_t, generator, uniform_noise), probs)


__all__ = ["AnalyticSampler", "tweedie_denoise", "ScoreSampler"]
