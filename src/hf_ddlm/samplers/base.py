"""The sampler contract: parameter-free objects with ``set_timesteps`` and ``step``.

A sampler never calls the model: the generation loop owns the network calls (and their caching)
and hands each step the model's native output. ``needs`` says which output a sampler reads:
``"log_score"`` (SEDD's log concrete score) or ``"log_probs"`` (log p_theta(x0 | x_t), MDLM).
Times are per sample: ``t`` and ``s < t`` are tensors of shape [B].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SamplerOutput:
    prev_sample: torch.LongTensor  # x_s, the state at the earlier time s
    probs: torch.Tensor | None = None  # the (unnormalised) categorical weights it was drawn from


class LazyProbsOutput(SamplerOutput):
    """A ``SamplerOutput`` whose ``probs`` are built on first access: a sampler that draws without
    forming the [B, L, V] weights (the generation loop never reads them) still reports them."""

    def __init__(self, prev_sample, build_probs):
        self.prev_sample = prev_sample
        self._build_probs = build_probs
        self._probs = None

    @property
    def probs(self):
        if self._probs is None:
            self._probs = self._build_probs()
        return self._probs


class Sampler:
    name = ""
    needs = "log_score"

    def __init__(self, graph, schedule):
        self.graph = graph
        self.schedule = schedule
        self.timesteps = None

    def set_timesteps(self, num_inference_steps: int, t_min: float = 1e-5, device=None) -> torch.Tensor:
        """A decreasing grid t_0 = 1 > ... > t_n = t_min (``num_inference_steps`` + 1 points), the
        grid of the official SEDD and MDLM samplers."""
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        if not 0.0 < t_min < 1.0:
            raise ValueError(f"t_min must be in (0, 1), got {t_min}")
        self.timesteps = torch.linspace(1, t_min, num_inference_steps + 1, device=device)
        return self.timesteps

    def step(self, model_output, x_t, t, s, generator=None, uniform_noise=None) -> SamplerOutput:
        raise NotImplementedError

    def denoise(self, model_output, x_t, t, generator=None, uniform_noise=None) -> SamplerOutput:
        """The final step from t = t_min to clean data (no mask left)."""
        raise NotImplementedError


SAMPLERS: dict[str, type[Sampler]] = {}


def register_sampler(cls):
    SAMPLERS[cls.name] = cls
    return cls


def get_sampler(name: str, graph, schedule, **kwargs) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(SAMPLERS)}, got {name!r}")
    return SAMPLERS[name](graph, schedule, **kwargs)
