"""Predictor-corrector tau-leaping (Campbell et al. 2022, sec. 4.2).

After a predictor leap to time t, corrector leaps of size ``corrector_step_multiplier`` x (predictor
step) run at the same t with the rate R_t(x, .) + R-hat_t(x, .), forward plus reverse, whose
stationary distribution is q_t: they pull the state back towards the marginal without moving time.

The shared generation loop makes one network call per grid entry, so the grid repeats t for every
corrector entry (t == s marks a corrector step) and ``num_inference_steps`` counts network calls,
predictor and corrector entries together: the largest number P of predictor steps whose grid fits
is used, and any calls left over become extra corrector entries at t_min.
"""

from __future__ import annotations

import torch

from ..processes.graphs import Graph
from ..processes.schedules import NoiseSchedule
from .base import SamplerOutput, register_sampler
from .tau_leaping import RateTerms, TauLeapingSampler, categorical_leap, forward_rate_terms, reverse_rate_terms


@register_sampler
class PredictorCorrectorSampler(TauLeapingSampler):
    """Args:
    num_corrector_steps: corrector leaps after each predictor leap (>= 0; 0 is plain tau-leaping).
    corrector_step_multiplier: corrector step size over the predictor step size (tau-LDR: 1.5 on
        CIFAR-10, 0.1 on piano).
    corrector_entry_time: correctors run only at t <= this (tau-LDR: 0.1 CIFAR-10, 0.9 piano).
    corrector_jump_rule: ``"poisson"`` (tau-leaping) or ``"euler"``.
    final_step, return_probs: as for ``tau_leaping``.
    """

    name = "predictor_corrector"

    def __init__(
        self,
        graph: Graph,
        schedule: NoiseSchedule,
        num_corrector_steps: int = 1,
        corrector_step_multiplier: float = 1.0,
        corrector_entry_time: float = 1.0,
        corrector_jump_rule: str = "poisson",
        final_step: str = "argmax",
        return_probs: bool = False,
    ):
        super().__init__(graph, schedule, final_step, return_probs)
        if isinstance(num_corrector_steps, bool) or not isinstance(num_corrector_steps, int) or num_corrector_steps < 0:
            raise ValueError(f"num_corrector_steps must be an integer >= 0, got {num_corrector_steps!r}")
        if not corrector_step_multiplier > 0:
            raise ValueError(f"corrector_step_multiplier must be > 0, got {corrector_step_multiplier}")
        if not 0.0 <= corrector_entry_time <= 1.0:
            raise ValueError(f"corrector_entry_time must be in [0, 1], got {corrector_entry_time}")
        if corrector_jump_rule not in ("poisson", "euler"):
            raise ValueError(f"corrector_jump_rule must be 'poisson' or 'euler', got {corrector_jump_rule!r}")
        self.num_corrector_steps = num_corrector_steps
        self.corrector_step_multiplier = corrector_step_multiplier
        self.corrector_entry_time = corrector_entry_time
        self.corrector_jump_rule = corrector_jump_rule
        self.predictor_step = None

    def _grid(self, num_predictor_steps: int, t_min: float) -> list[float]:
        times = torch.linspace(1, t_min, num_predictor_steps + 1, dtype=torch.float64).tolist()
        grid = [times[0]]
        for tau in times[1:]:
            grid.append(tau)
            if tau <= self.corrector_entry_time:
                grid += [tau] * self.num_corrector_steps
        return grid

    def set_timesteps(
        self, num_inference_steps: int, t_min: float = 1e-5, device: torch.device | str | None = None
    ) -> torch.Tensor:
        super().set_timesteps(num_inference_steps, t_min, device)  # validates
        n = num_inference_steps
        lo, hi = 1, n  # the most predictor steps whose grid fits in n calls (its length grows with p)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if len(self._grid(mid, t_min)) - 1 <= n else (lo, mid - 1)
        predictors = lo
        grid = self._grid(predictors, t_min)[: n + 1]
        grid += [t_min] * (n + 1 - len(grid))
        self.predictor_step = (1 - t_min) / predictors
        self.timesteps = torch.tensor(grid, dtype=torch.float32, device=device)
        return self.timesteps

    def step(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        s: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        if not torch.equal(t, s):
            return super().step(model_output, x_t, t, s, generator, uniform_noise)
        if self.predictor_step is None:
            raise ValueError("call set_timesteps before a corrector step (t == s)")
        # corrector: forward rates out of x (dsigma Q(x, .)) plus the reverse rates, both of the
        # form a u(y) + c p~(y) with the same u, so they add term by term
        rev = reverse_rate_terms(self.graph, self.schedule, model_output, x_t, t)
        fwd = forward_rate_terms(self.graph, self.schedule, x_t, t)
        h = self.corrector_step_multiplier * self.predictor_step
        hazards = RateTerms(h * (rev.a + fwd.a), h * rev.c, rev.u)
        return categorical_leap(
            hazards,
            self.graph,
            model_output,
            x_t,
            self.corrector_jump_rule,
            False,
            generator,
            uniform_noise,
            self.return_probs,
        )


__all__ = ["PredictorCorrectorSampler"]
