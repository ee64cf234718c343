"""ReMDM remasking (Wang et al. 2025, "Remasking Discrete Diffusion Models with Inference-Time
Scaling", sec. 3): ancestral sampling of masked diffusion that may re-mask committed tokens.

The ReMDM posterior (eq. 6) keeps MDLM's marginals q(z_s | x) = Cat(alpha_s x + (1 - alpha_s) m)
for any remasking probability 0 <= sigma_t <= sigma_max = min(1, (1 - alpha_s) / alpha_t):

    committed z_t = x:  q(z_s | z_t, x) = Cat((1 - sigma_t) x + sigma_t m)
    masked    z_t = m:  q(z_s | z_t, x) = Cat(r_t x + (1 - r_t) m),  r_t = (alpha_s - (1 - sigma_t) alpha_t) / (1 - alpha_t)

(the chance alpha_t (1 - sigma_t) + (1 - alpha_t) r_t that z_s = x is alpha_s). With x replaced by
p_theta(x0 | z_t) this is the sampler; sigma_t = 0 is MDLM's ancestral step. With the true
denoiser every schedule of sigma below keeps the data distribution, up to the error of drawing the
positions that move in one step independently (which vanishes with the step size, as MDLM's).

Schedules of sigma_t (``remasking``):

* ``"cap"``: sigma_t = min(eta, (1 - alpha_s) / alpha_t) (ReMDM-cap);
* ``"rescale"``: sigma_t = eta * sigma_max (ReMDM-rescale);
* ``"loop"``: three phases on the time grid (ReMDM-loop). For t > t_on, MDLM steps (sigma = 0)
  with alpha rising linearly from 0 at t = 1 to ``alpha_on`` at t_on; for t_off < t <= t_on alpha
  stays at ``alpha_on`` and every step remasks with sigma = eta (the masked chance
  1 - alpha_on is stationary, so this phase refines a partially decoded canvas at fixed time); for
  t <= t_off, MDLM steps with alpha rising linearly to 1 at t = 0. Like the official code, the
  loop's alpha replaces the model's schedule and the network is called at the grid time.
"""

from __future__ import annotations

import numbers

import torch

from ..categorical import draw_revealed_, sample_categorical
from ..processes.graphs import Graph
from ..processes.schedules import NoiseSchedule
from .base import LazyProbsOutput, Sampler, SamplerOutput, register_sampler, register_sampler_alias

REMASKING_SCHEDULES = ("cap", "rescale", "loop")


def _unit_interval(name: str, value, *, open_low: bool = False, open_high: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and (value > 0 if open_low else value >= 0) and (value < 1 if open_high else value <= 1)
    if not ok:
        interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


@register_sampler
class ReMDMSampler(Sampler):
    """ReMDM's remasking posterior on the ``set_timesteps`` grid (module docstring).

    Args:
        remasking: the sigma schedule, one of ``"cap"``, ``"rescale"``, ``"loop"``.
        eta: the remasking strength in [0, 1]: the cap, the rescaling factor, or the loop's constant
            sigma (which must keep r_t >= 0 in the loop: eta <= (1 - alpha_on) / alpha_on).
        move_chance: ``"schedule"`` (1 - alpha_t from the model's schedule) or ``"linear"``
            (1 - alpha_t = t, the official code's grid); cap and rescale only.
        t_on, t_off: the loop phase 1 > t_on > t_off > 0; ``alpha_on`` in (0, 1) its alpha.
    """

    name = "remdm"
    needs = "log_probs"

    def __init__(
        self,
        graph: Graph,
        schedule: NoiseSchedule,
        remasking: str = "cap",
        eta: float = 0.02,
        move_chance: str = "schedule",
        t_on: float = 0.55,
        t_off: float = 0.05,
        alpha_on: float = 0.9,
    ):
        super().__init__(graph, schedule)
        if not graph.absorbing:
            raise ValueError("the ReMDM sampler needs an absorbing graph (it remasks committed tokens)")
        if remasking not in REMASKING_SCHEDULES:
            raise ValueError(f"remasking must be one of {REMASKING_SCHEDULES}, got {remasking!r}")
        if move_chance not in ("schedule", "linear"):
            raise ValueError(f"move_chance must be 'schedule' or 'linear', got {move_chance!r}")
        self.remasking, self.move_chance = remasking, move_chance
        self.eta = _unit_interval("eta", eta)
        self.t_on = _unit_interval("t_on", t_on, open_low=True, open_high=True)
        self.t_off = _unit_interval("t_off", t_off, open_low=True, open_high=True)
        self.alpha_on = _unit_interval("alpha_on", alpha_on, open_low=True, open_high=True)
        if remasking == "loop":
            if not self.t_on > self.t_off:
                raise ValueError(f"the loop needs t_on > t_off, got t_on={t_on} and t_off={t_off}")
            sigma_max = (1 - self.alpha_on) / self.alpha_on  # the loop's sigma_max at alpha_s = alpha_t
            if self.eta > sigma_max:
                raise ValueError(
                    f"eta must be at most (1 - alpha_on) / alpha_on = {sigma_max:.4g} in the loop "
                    f"(above it the masked tokens' unmasking chance is negative), got {eta}"
                )

    # --- alpha_t and sigma_t per row ------------------------------------------------------------
    def _alpha(self, t: torch.Tensor) -> torch.Tensor:
        if self.remasking == "loop":
            rising = self.alpha_on * (1 - t) / (1 - self.t_on)  # t > t_on
            falling = 1 - (1 - self.alpha_on) * t / self.t_off  # t <= t_off
            return torch.where(t > self.t_on, rising, torch.where(t <= self.t_off, falling, self.alpha_on))
        if self.move_chance == "linear":
            return 1 - t
        return torch.exp(-self.schedule.total_noise(t))

    def _sigma(self, t: torch.Tensor, alpha_t: torch.Tensor, alpha_s: torch.Tensor) -> torch.Tensor:
        # sigma_max = min(1, (1 - alpha_s) / alpha_t); alpha_t = 0 (t = 1) has nothing to remask
        ratio = torch.where(alpha_t > 0, (1 - alpha_s) / alpha_t.clamp_min(1e-30), torch.ones_like(alpha_t))
        if self.remasking == "cap":
            return ratio.clamp(max=self.eta)
        if self.remasking == "rescale":
            return self.eta * ratio.clamp(max=1.0)
        in_loop = (t <= self.t_on) & (t > self.t_off)
        return torch.where(in_loop, torch.full_like(t, self.eta), torch.zeros_like(t))

    def remasking_probabilities(self, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigma_t, r_t) per row [B]: the chance a committed token is remasked, and the chance a
        masked one is revealed (eq. 6)."""
        t, s = t.double(), s.double()
        alpha_t, alpha_s = self._alpha(t), self._alpha(s)
        sigma = self._sigma(t, alpha_t, alpha_s)
        reveal = (alpha_s - (1 - sigma) * alpha_t) / (1 - alpha_t).clamp_min(1e-30)
        return sigma, reveal.clamp(0.0, 1.0)

    def step(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        s: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        mask = self.graph.mask_token_id
        sigma, reveal = (p.to(torch.float32)[:, None] for p in self.remasking_probabilities(t, s))
        masked = x_t == mask

        def weights():
            # committed: (1 - sigma) on x_t, sigma on m; masked: r p_theta on clean tokens, 1 - r on m
            p = model_output.float().exp().masked_fill(~masked[..., None], 0.0) * reveal[..., None]
            p[..., mask] = torch.where(masked, 1 - reveal, sigma)
            rows = (~masked).nonzero(as_tuple=True)
            p[(*rows, x_t[rows])] = (1 - sigma).expand_as(x_t)[rows]
            return p

        if uniform_noise is not None:  # one race over the weights (reproducible draws, tests)
            probs = weights()
            return SamplerOutput(sample_categorical(probs, generator, uniform_noise), probs)
        # two stages: which positions move (remask or reveal), then the revealed tokens' values
        u = torch.rand(x_t.shape, generator=generator, device=x_t.device)
        revealed = masked & (u < reveal)
        x_s = x_t.masked_fill(~masked & (u < sigma), mask)
        rows = revealed.nonzero(as_tuple=True)
        x_s = draw_revealed_(x_s, rows, model_output[rows].float().exp(), mask, generator)
        return LazyProbsOutput(x_s, weights)

    def denoise(
        self,
        model_output: torch.Tensor,
        x_t: torch.LongTensor,
        t: torch.Tensor,
        generator: torch.Generator | None = None,
        uniform_noise: torch.Tensor | None = None,
    ) -> SamplerOutput:
        """MDLM's noise removal: the tokens still masked at t = t_min take the argmax of p_theta."""
        masked = x_t == self.graph.mask_token_id
        return SamplerOutput(torch.where(masked, model_output.argmax(-1), x_t), model_output.exp())


register_sampler_alias("remdm_cap", "remdm", remasking="cap")
register_sampler_alias("remdm_rescale", "remdm", remasking="rescale")
register_sampler_alias("remdm_loop", "remdm", remasking="loop")

__all__ = ["REMASKING_SCHEDULES", "ReMDMSampler"]
