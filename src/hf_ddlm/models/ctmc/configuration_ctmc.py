"""Configuration of the continuous-time discrete diffusion framework of Campbell et al.
("A Continuous Time Framework for Discrete Denoising Models", NeurIPS 2022; tau-LDR)."""

from __future__ import annotations

from typing import Literal

from ..configuration_utils import DiffusionConfig, GraphName, Number, ScheduleName, interval, strict_config


@strict_config
class CTMCConfig(DiffusionConfig):
    r"""A CTMC with rates R_t = beta(t) R, beta = dsigma/dt, on the DDiT backbone; the network
    predicts p~(x0 | x_t) and the reverse rates follow in closed form.

    graph (`str`, defaults to ``"uniform"``): the rate type R: ``"uniform"`` (R = 11^T/S - I, the
        normalised form of tau-LDR's uniform rate) or ``"absorbing"`` (every token to the mask at rate 1).
    noise_schedule (`str`, *optional*): sigma(t) = int beta. Defaults to ``"geometric"`` (sigma from
        1e-4 to 20) for uniform and to ``"loglinear"`` with ``noise_eps=0`` for absorbing (mask
        probability exactly t, so q_1 is all-mask and the prior term of the bound is 0).
    time_conditioning (`bool`, *optional*): defaults to False for absorbing noise (its true
        p(x0 | x_t) does not depend on t, so the backbone sees sigma = 0 and sampler steps that
        change nothing reuse the network output) and True for uniform noise.
    ctmc_estimator (`str`, defaults to ``"one_pass"``): the training estimator of L_CT:
        ``"one_pass"`` (tau-LDR's, network at x~ = x_t plus one forward jump; the regulariser at x~ is
        an approximation) or ``"exact"`` (unbiased, network at x_t). ``negative_elbo`` always uses
        the exact one.
    hybrid_loss_coeff (`float`, defaults to 0.001): weight of the added -log p~(x0 | input) (tau-LDR's
        ``nll_weight``).
    """

    model_type = "ctmc"

    graph: GraphName = "uniform"
    # None: the graph's defaults (see above), filled in by __post_init__
    noise_schedule: ScheduleName | None = None
    noise_eps: Number | None = interval(min=0.0, max=1.0, exclude_max=True)(default=None)
    time_conditioning: bool | None = None
    ctmc_estimator: Literal["one_pass", "exact"] = "one_pass"
    hybrid_loss_coeff: Number = interval(min=0.0)(default=0.001)

    def __post_init__(self, **kwargs):
        absorbing = self.graph in ("absorbing", "absorb")
        if self.noise_schedule is None:
            self.noise_schedule = "loglinear" if absorbing else "geometric"
        if self.time_conditioning is None:
            self.time_conditioning = not absorbing
        if self.noise_eps is None:
            self.noise_eps = 0.0 if absorbing else 1e-3
        super().__post_init__(**kwargs)


__all__ = ["CTMCConfig"]
