"""SEDD's Euler sampler (official ``sampling.py``, ``EulerPredictor``): a first-order step of the
learned reverse CTMC. It reads the log concrete score at sigma(t)."""

from __future__ import annotations

import torch

from ..categorical import race_moving_rows, reveal_absorbing
from .analytic import ScoreSampler
from .base import LazyProbsOutput, SamplerOutput, register_sampler


@register_sampler
class EulerSampler(ScoreSampler):
    """x_s ~ onehot(x_t) + (t - s) dsigma(t) Q-bar_t(x_t, .), Q-bar the learned reverse rate (SEDD eq. 17)."""

    name = "euler"

    def step(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        s: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
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
                reveal_absorbing(model_output, x_t, self.graph.mask_token_id, step_rate, False, generator), weights
            )
        probs = weights()
        return SamplerOutput(race_moving_rows(self.graph, probs, x_t, generator, uniform_noise), probs)


__all__ = ["EulerSampler"]
