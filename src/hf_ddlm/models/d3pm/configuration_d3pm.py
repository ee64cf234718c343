"""D3PM configuration (Austin et al., "Structured Denoising Diffusion Models in Discrete
State-Spaces", NeurIPS 2021)."""

from __future__ import annotations

from typing import Literal

from ...processes.discrete_time import DiscreteTimeSchedule
from ...processes.schedules import get_schedule
from ..configuration_utils import DiffusionConfig, Number, ScheduleName, interval, positive, strict_config


@strict_config
class D3PMConfig(DiffusionConfig):
    r"""Discrete-time D3PM with T steps on the DDiT backbone.

    num_timesteps (`int`, defaults to 1000): T; the model is conditioned on the step k in 1..T.
    noise_schedule (`str`, *optional*): the continuous alpha(t) that fixes beta_k = 1 - alpha(k/T) / alpha((k-1)/T).
        Defaults to the paper's choices: ``"loglinear"`` with ``noise_eps=0`` for absorbing noise
        (beta_k = 1/(T - k + 1), alpha_bar_k = 1 - k/T) and ``"cosine"`` for uniform noise.
    betas (`list[float]`, *optional*): explicit beta_1..beta_T instead (each in (0, 1), beta_T in (0, 1]).
    max_beta (`float`, *optional*): clip of beta_k; defaults to 0.999 for the cosine schedule (official code), else 1.
    hybrid_loss_coeff (`float`, *optional*): lambda of L_vb + lambda CE; defaults to the text settings
        of the official code, 0.01 (absorbing) and 0.0 (uniform).
    reverse_parameterization (`str`, defaults to ``"mixture"``): ``"mixture"`` (sum_x0 p~(x0|x_t) q(x_{t-1}|x_t,x0),
        exact) or ``"paper"`` (eq. 4, exact for absorbing noise only). See ``processes.discrete_time``.

    For absorbing noise beta_T is forced to 1 (as the official text code does), so q(x_T | x0) is
    all-mask and the prior term of the bound is exactly 0.
    """

    model_type = "d3pm"

    num_timesteps: int = positive(default=1000)
    # None: the graph's defaults (see above), filled in by __post_init__
    noise_schedule: ScheduleName | None = None
    noise_eps: Number = interval(min=0.0, max=1.0, exclude_max=True)(default=0.0)
    betas: list[Number] | None = None
    max_beta: Number | None = interval(min=0.0, max=1.0, exclude_min=True)(default=None)
    hybrid_loss_coeff: Number | None = interval(min=0.0)(default=None)
    reverse_parameterization: Literal["mixture", "paper"] = "mixture"

    def __post_init__(self, **kwargs):
        absorbing = self.graph in ("absorbing", "absorb")
        if self.noise_schedule is None:
            self.noise_schedule = "loglinear" if absorbing else "cosine"
        if self.max_beta is None:
            self.max_beta = 0.999 if self.noise_schedule == "cosine" else 1.0
        if self.hybrid_loss_coeff is None:
            self.hybrid_loss_coeff = 0.01 if absorbing else 0.0
        super().__post_init__(**kwargs)

    def validate_betas(self):
        """Explicit betas: T of them, each in (0, 1) and beta_T in (0, 1] (checked by building the schedule)."""
        self.discrete_schedule()

    def discrete_schedule(self) -> DiscreteTimeSchedule:
        base = None if self.betas is not None else get_schedule(self.noise_schedule, **self.schedule_kwargs())
        return DiscreteTimeSchedule(
            self.num_timesteps,
            base=base,
            betas=self.betas,
            max_beta=self.max_beta,
            terminal_beta_one=self.graph == "absorbing",
        )


__all__ = ["D3PMConfig"]
