"""D3PM ancestral sampling: x_s ~ p_theta(x_s | x_t) on the T-step grid, with step skipping."""

from __future__ import annotations

import torch

from ..categorical import draw_categorical_rows
from ..processes.discrete_time import DiscreteTimeSchedule, d3pm_reverse_log_probs, log_stationary
from ..processes.graphs import Graph
from .base import Sampler, SamplerOutput, register_sampler


@register_sampler
class D3PMAncestralSampler(Sampler):
    """Draws x_s from the x0-parameterised reverse step of ``processes.discrete_time``.

    ``set_timesteps(n)`` takes n <= T steps on the grid k = round(linspace(T, 0, n + 1)); the last
    step lands on x0 (k = 0), so there is no separate denoising step (``denoise`` returns its input;
    D3PM models default to ``noise_removal=False``). Strides > 1 use the two-time kernel
    Q_{t|s}, closed form for every stride because all steps share the stationary pi (the text code's
    step skipping for x0-prediction). With ``parameterization="mixture"`` and the true p(x0 | x_t)
    the step is exact per position.

    Args:
        parameterization: ``"mixture"`` (exact) or ``"paper"`` (eq. 4); match the model's
            ``reverse_parameterization`` (its default generation config does).
        final_argmax: take the argmax instead of a sample on the step into x0 (the official text
            code's last step).
        return_probs: also return each step's per-position probabilities p_theta(x_s | x_t) [B, L, V].

    A step costs O(B L) plus a categorical over the vocabulary only where x_s is drawn from the
    x0-prediction: the step's distribution is a mixture of "stay", "draw from w" and "draw from pi"
    whose weights need only w(x_t) and pi(x_t).
    """

    name = "d3pm_ancestral"
    needs = "log_probs"
    discrete_time = True  # steps on the schedule's T timesteps; the continuous-time samplers do not apply to D3PM

    def __init__(
        self,
        graph: Graph,
        schedule: DiscreteTimeSchedule,
        parameterization: str = "mixture",
        final_argmax: bool = False,
        return_probs: bool = False,
    ):
        super().__init__(graph, schedule)
        if not isinstance(schedule, DiscreteTimeSchedule):
            raise ValueError("the d3pm_ancestral sampler needs a discrete-time (D3PM) schedule")
        if parameterization not in ("mixture", "paper"):
            raise ValueError(f"parameterization must be 'mixture' or 'paper', got {parameterization!r}")
        self.parameterization = parameterization
        self.final_argmax = final_argmax
        self.return_probs = return_probs

    def set_timesteps(
        self, num_inference_steps: int, t_min: float | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        T = self.schedule.num_timesteps
        if (
            isinstance(num_inference_steps, bool)
            or not isinstance(num_inference_steps, int)
            or not 1 <= num_inference_steps <= T
        ):
            raise ValueError(
                f"num_inference_steps must be an integer in [1, num_timesteps = {T}], got {num_inference_steps!r}"
            )
        k = torch.linspace(T, 0, num_inference_steps + 1, dtype=torch.float64).round()
        self.timesteps = (k / T).to(device=device, dtype=torch.float32)
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
        k_t, k_s = self.schedule.step_index(t), self.schedule.step_index(s)
        coef = self.schedule.coefficients(k_t, k_s)
        log_pi = log_stationary(self.graph, torch.float32, x_t.device)
        log_p = model_output.float()
        # p(x_s = j | x_t) ~ q(x_t | j) (alpha_s w(j) + (1 - alpha_s) pi(j)) with
        # q(x_t | j) = move pi(x_t) + keep [j = x_t]: three components, "stay at x_t", "draw from w"
        # and "draw from pi", whose masses need only w(x_t) and pi(x_t) (w sums to one)
        pi_xt = log_pi.exp()[x_t]
        p_xt = torch.gather(log_p, -1, x_t.unsqueeze(-1)).squeeze(-1).exp()
        col = lambda z: z[:, None]  # noqa: E731
        log_r = torch.zeros_like(p_xt)  # w = p~ with its x_t entry scaled by r, renormalised
        if self.parameterization == "mixture":
            off = col(coef.one_minus_alpha_t) * pi_xt  # q(x_t | v != x_t)
            on = col(coef.alpha_t) + off  # q(x_t | x_t)
            compatible = off > 0
            r = torch.where(compatible, off / on, 1.0)
            w_xt = torch.where(compatible, r * p_xt / (1 + (r - 1) * p_xt), 1.0)
            log_r = torch.where(compatible, r.log(), 0.0)
        else:
            w_xt = p_xt
        stay = col(coef.keep) * (col(coef.alpha_s) * w_xt + col(coef.one_minus_alpha_s) * pi_xt)
        from_w = col(coef.move) * pi_xt * col(coef.alpha_s)
        from_pi = col(coef.move) * pi_xt * col(coef.one_minus_alpha_s)
        u = torch.rand(x_t.shape, generator=generator, device=x_t.device) * (stay + from_w + from_pi)
        rows_w = (u >= stay) & (u < stay + from_w)
        rows_pi = u >= stay + from_w
        x_s = x_t.clone()
        if rows_pi.any():
            if self.graph.absorbing:
                x_s[rows_pi] = self.graph.mask_token_id
            else:
                x_s[rows_pi] = torch.randint(
                    0, self.graph.vocab_size, (int(rows_pi.sum()),), generator=generator, device=x_t.device
                )
        if rows_w.any():
            x_s[rows_w] = draw_categorical_rows(
                log_p, rows_w, generator, uniform_noise, log_shift=(x_t[rows_w], log_r[rows_w])
            )
        probs = None
        if self.return_probs or (self.final_argmax and (k_s == 0).any()):
            probs = d3pm_reverse_log_probs(log_p, x_t, coef, log_pi, self.parameterization).exp()
        if self.final_argmax:
            x_s = torch.where((k_s == 0)[:, None], probs.argmax(-1) if probs is not None else x_s, x_s)
        return SamplerOutput(x_s, probs)

    def denoise(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """The grid already ends at x0: nothing is left to remove."""
        return SamplerOutput(x_t, None)


__all__ = ["D3PMAncestralSampler"]
