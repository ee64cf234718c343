"""The sampler contract: parameter-free objects with ``set_timesteps`` and ``step``.

A sampler never calls the model: the generation loop owns the network calls (and their caching)
and hands each step the model's native output. ``needs`` says which output a sampler reads:
``"log_score"`` (SEDD's log concrete score), ``"log_probs"`` (log p_theta(x0 | x_t), MDLM) or
``"concrete_score"`` (CSM). Times are per sample: ``t`` and ``s < t`` are tensors of shape [B].

Optional part of the contract, the first-hitting protocol (``first_hitting = True``): the sampler
draws its own times instead of stepping on the ``set_timesteps`` grid, and each step reveals exactly
one masked token per row at a position that does not depend on the network output. A loop that
knows it (block decoding) then calls ``next_time``, ``choose_positions`` and ``reveal`` so that
the network's output head runs at the revealed position only; every other loop just calls ``step``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..processes.graphs import Graph
from ..processes.schedules import NoiseSchedule


@dataclass
class SamplerOutput:
    prev_sample: torch.LongTensor  # x_s, the state at the earlier time s
    probs: torch.Tensor | None = None  # the (unnormalised) categorical weights it was drawn from


class LazyProbsOutput(SamplerOutput):
    """A ``SamplerOutput`` whose ``probs`` are built on first access: a sampler that draws without
    forming the [B, L, V] weights (the generation loop never reads them) still reports them."""

    def __init__(self, prev_sample: torch.LongTensor, build_probs: Callable[[], torch.Tensor]):
        self.prev_sample = prev_sample
        self._build_probs = build_probs
        self._probs = None

    @property
    def probs(self) -> torch.Tensor:
        if self._probs is None:
            self._probs = self._build_probs()
        return self._probs


class Sampler:
    name: str = ""
    needs: str = "log_score"
    first_hitting: bool = False  # the optional first-hitting protocol (module docstring)

    def __init__(self, graph: Graph, schedule: NoiseSchedule | None):
        self.graph = graph
        self.schedule = schedule
        self.timesteps: torch.Tensor | None = None

    def set_timesteps(
        self, num_inference_steps: int, t_min: float = 1e-5, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """A decreasing grid t_0 = 1 > ... > t_n = t_min (``num_inference_steps`` + 1 points), the
        grid of the official SEDD and MDLM samplers."""
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        if not 0.0 < t_min < 1.0:
            raise ValueError(f"t_min must be in (0, 1), got {t_min}")
        self.timesteps = torch.linspace(1, t_min, num_inference_steps + 1, device=device)
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
        """x_s from x_t given the model's output at (x_t, t); ``uniform_noise`` fixes the draws (tests)."""
        raise NotImplementedError

    def denoise(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """The final step from t = t_min to clean data (no mask left)."""
        raise NotImplementedError

    # --- the first-hitting protocol (only when ``first_hitting`` is True) ----------------------
    def next_time(
        self, t: torch.Tensor, x_t: torch.LongTensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The time s < t [B] of the next reveal, per row."""
        raise NotImplementedError(f"{type(self).__name__} steps on the set_timesteps grid (first_hitting is False)")

    def choose_positions(self, x_t: torch.LongTensor, generator: torch.Generator | None = None) -> torch.LongTensor:
        """The position [B, 1] revealed next in each row (independent of the network output)."""
        raise NotImplementedError(f"{type(self).__name__} steps on the set_timesteps grid (first_hitting is False)")

    def reveal(
        self,
        log_probs: torch.Tensor,
        x_t: torch.LongTensor,
        positions: torch.LongTensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """Draws the token at ``positions`` [B, 1] from the model output there [B, V] and writes it."""
        raise NotImplementedError(f"{type(self).__name__} steps on the set_timesteps grid (first_hitting is False)")


SAMPLERS: dict[str, type[Sampler]] = {}
# another registry name for a sampler with preset constructor arguments: name -> (sampler, preset)
SAMPLER_ALIASES: dict[str, tuple[str, dict]] = {}


def register_sampler(cls: type[Sampler]) -> type[Sampler]:
    SAMPLERS[cls.name] = cls
    return cls


def register_sampler_alias(alias: str, name: str, **preset) -> None:
    """``get_sampler(alias, ...)`` builds the sampler ``name`` with the arguments ``preset``."""
    SAMPLER_ALIASES[alias] = (name, preset)


def get_sampler(name: str, graph: Graph, schedule: NoiseSchedule | None, **kwargs) -> Sampler:
    if name in SAMPLER_ALIASES:
        target, preset = SAMPLER_ALIASES[name]
        fixed = sorted(set(preset) & set(kwargs))
        if fixed:
            raise ValueError(f"sampler {name!r} is {target!r} with {preset}: do not pass {fixed} as well")
        return SAMPLERS[target](graph, schedule, **preset, **kwargs)
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted([*SAMPLERS, *SAMPLER_ALIASES])}, got {name!r}")
    return SAMPLERS[name](graph, schedule, **kwargs)


__all__ = [
    "LazyProbsOutput",
    "SAMPLERS",
    "SAMPLER_ALIASES",
    "Sampler",
    "SamplerOutput",
    "get_sampler",
    "register_sampler",
    "register_sampler_alias",
]
