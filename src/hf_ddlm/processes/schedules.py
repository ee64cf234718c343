"""Noise schedules: the map t -> total noise sigma(t).

Symbols used everywhere in hf_ddlm (time runs from t=0, clean data, to t=1, fully noised):

* ``sigma``  -- the *total* noise sigma-bar(t) = int_0^t beta(s) ds. The forward CTMC with rate
  matrix ``beta(t) Q`` has transition ``exp(sigma(t) Q)``.
* ``dsigma`` -- its rate d sigma / dt (SEDD's ``rate_noise``; MDLM's ``sigma'``).
* ``alpha``  -- exp(-sigma): the probability that a token is untouched at time t (MDLM's alpha_t).
* ``mask_prob`` -- 1 - alpha = -expm1(-sigma): MDLM's "move chance".
* ``expm1_sigma`` -- e^sigma - 1 with the official switch (expm1 below 0.5, exp - 1 above), the
  ``E`` of SEDD's score entropy and of its ``scale_by_sigma``.

Schedules are plain objects (no parameters, no buffers) that compute in the dtype and on the device
of ``t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def expm1_sigma(sigma: torch.Tensor) -> torch.Tensor:
    """e^sigma - 1, computed exactly as the official SEDD code does (expm1 for sigma < 0.5)."""
    return torch.where(sigma < 0.5, torch.expm1(sigma), sigma.exp() - 1)


@dataclass
class NoiseLevel:
    """The noise at a time t. ``sigma`` and ``dsigma`` have the shape of t."""

    sigma: torch.Tensor
    dsigma: torch.Tensor

    @property
    def alpha(self) -> torch.Tensor:
        return torch.exp(-self.sigma)

    @property
    def dalpha(self) -> torch.Tensor:
        return -self.dsigma * self.alpha

    @property
    def mask_prob(self) -> torch.Tensor:
        return -torch.expm1(-self.sigma)

    @property
    def expm1_sigma(self) -> torch.Tensor:
        return expm1_sigma(self.sigma)


class NoiseSchedule:
    """Base class: subclasses implement ``total_noise`` and ``rate_noise``.

    ``config_fields`` maps each constructor argument that a model config sets to the config field
    holding it (``DiffusionConfig.schedule_kwargs`` reads it); arguments not listed keep their default.
    """

    name: str = ""
    config_fields: dict[str, str] = {}

    def total_noise(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rate_noise(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, t: torch.Tensor) -> NoiseLevel:
        return NoiseLevel(sigma=self.total_noise(t), dsigma=self.rate_noise(t))

    def masked_nelbo_weight(self, t: torch.Tensor, level: NoiseLevel) -> torch.Tensor:
        """The weight -alpha'_t / (1 - alpha_t) = dsigma / (e^sigma - 1) of the masked-diffusion
        NELBO (MDLM eq. 11), in the form the official MDLM code computes it."""
        return level.dsigma / torch.expm1(level.sigma)

    def to_dict(self) -> dict:
        return {}


class LogLinearSchedule(NoiseSchedule):
    """sigma(t) = -log(1 - (1 - eps) t), so the mask probability is (1 - eps) t (SEDD, MDLM).

    ``eps`` keeps sigma(1) finite: 1e-3 in both official codes (SEDD hard-codes it). With eps = 0
    this is BD3-LM's schedule (mask probability exactly t).
    """

    name = "loglinear"
    config_fields = {"eps": "noise_eps"}

    def __init__(self, eps: float = 1e-3):
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"noise_eps must be in [0, 1), got {eps}")
        self.eps = eps

    def total_noise(self, t):
        return -torch.log1p(-(1 - self.eps) * t)

    def rate_noise(self, t):
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def masked_nelbo_weight(self, t, level):
        # eps = 0 (mask probability exactly t): the weight is 1/t in closed form, as bd3lms computes
        # it; dsigma / expm1(sigma) would be inf / inf at t = 1
        if self.eps == 0:
            return 1 / t
        return super().masked_nelbo_weight(t, level)

    def to_dict(self):
        return {"eps": self.eps}


class GeometricSchedule(NoiseSchedule):
    """sigma(t) = sigma_min^(1-t) sigma_max^t (SEDD's geometric noise, used with the uniform graph)."""

    name = "geometric"
    config_fields = {"sigma_min": "sigma_min", "sigma_max": "sigma_max"}

    def __init__(self, sigma_min: float = 1e-4, sigma_max: float = 20.0):
        if not 0.0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
        self.sigma_min = sigma_min
        self.sigma_max = sigma_max

    def total_noise(self, t):
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def rate_noise(self, t):
        return self.total_noise(t) * (math.log(self.sigma_max) - math.log(self.sigma_min))

    def to_dict(self):
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class CosineSchedule(NoiseSchedule):
    """alpha(t) = cos((t + s)/(1 + s) pi/2) / cos(s/(1 + s) pi/2): the cosine schedule of
    Nichol & Dhariwal (2021) that D3PM uses for uniform noise (s = 0.008).

    sigma = -log alpha is computed in float64 and alpha is floored at 1e-20, so sigma(1) stays
    finite (about 46) instead of becoming -log(cos(pi/2)) with a rounding-dependent sign.
    """

    name = "cosine"  # its offset s is not a config field: D3PM's 0.008 throughout

    def __init__(self, offset: float = 0.008):
        if not offset > 0.0:
            raise ValueError(f"cosine offset must be > 0, got {offset}")
        self.offset = offset

    def _angle(self, t):
        return (t.double() + self.offset) / (1 + self.offset) * (math.pi / 2)

    def total_noise(self, t):
        cos0 = math.cos(self.offset / (1 + self.offset) * math.pi / 2)
        return (-(torch.cos(self._angle(t)).clamp_min(1e-20) / cos0).log()).to(t.dtype)

    def rate_noise(self, t):
        return (torch.tan(self._angle(t)).clamp_max(1e20) * (math.pi / 2) / (1 + self.offset)).to(t.dtype)

    def to_dict(self):
        return {"offset": self.offset}


SCHEDULES: dict[str, type[NoiseSchedule]] = {
    LogLinearSchedule.name: LogLinearSchedule,
    GeometricSchedule.name: GeometricSchedule,
    CosineSchedule.name: CosineSchedule,
}


def get_schedule(name: str, **kwargs) -> NoiseSchedule:
    """Build a schedule by name; ``kwargs`` are the schedule's own parameters."""
    if name not in SCHEDULES:
        raise ValueError(f"noise_schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
    return SCHEDULES[name](**kwargs)


__all__ = [
    "CosineSchedule",
    "GeometricSchedule",
    "LogLinearSchedule",
    "NoiseLevel",
    "NoiseSchedule",
    "SCHEDULES",
    "expm1_sigma",
    "get_schedule",
]
