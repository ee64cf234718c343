"""Semi-autoregressive blocks inside a full-sequence canvas (LLaDA, Nie et al. 2025, sec. 2.4:
"semi-autoregressive remasking").

The generated part of the canvas is cut into blocks of ``block_length`` decoded left to right: block
b is denoised while the blocks after it stay masked (the network still sees them, masked) and the
blocks before it are done. ``SemiAutoregressiveSampler`` wraps any grid sampler (``ancestral``,
``confidence``, ``threshold``, ``entropy_bounded``, ...) so that the full-sequence loop
(``generation.mixin``, ``generate(block_length=...)``) needs no loop of its own:

* its grid is the usual one, 1 = T_0 > ... > T_n = t_min; block b owns the steps
  [c_b, c_{b+1}) of it, ``num_inference_steps`` split as evenly as possible (the first
  ``steps % blocks`` blocks take one more). The network is called at the grid time t, which
  decreases as the canvas fills (a time-conditioned model sees the global masking level);
* a step at t in (T_{c_{b+1}}, T_{c_b}] hands the wrapped sampler block b only, at the local time
  tau = t_min + (1 - t_min) (t - T_{c_{b+1}}) / (T_{c_b} - T_{c_{b+1}}), so the block runs a whole
  reverse process from tau = 1 to t_min over its steps;
* at a block's last step the masks left in it are committed by the wrapped sampler's ``denoise``
  on the same network output (its noise removal; no extra call), so the next block starts after a
  finished one.
"""

from __future__ import annotations

import torch

from .base import Sampler, SamplerOutput


def check_block_length(block_length) -> int:
    if not isinstance(block_length, int) or isinstance(block_length, bool) or block_length < 1:
        raise ValueError(f"block_length must be a positive integer (or None: no blocks), got {block_length!r}")
    return block_length


class SemiAutoregressiveSampler(Sampler):
    """``sampler`` run block by block over positions [start, length) of the canvas (module docstring).

    Args:
        sampler: a grid sampler (not first-hitting).
        block_length: positions per block (the last block may be shorter).
        start: the first generated position (after a prompt; 0 for infilling).
        length: the canvas length.
    """

    name = "semi_autoregressive"

    def __init__(self, sampler: Sampler, block_length: int, start: int, length: int):
        super().__init__(sampler.graph, sampler.schedule)
        if sampler.first_hitting:
            raise ValueError(
                f"block_length needs a sampler that steps on the time grid; {sampler.name!r} draws its own times"
            )
        if not sampler.graph.absorbing:
            raise ValueError("block_length keeps later blocks masked: it needs an absorbing (masked) graph")
        if type(sampler).set_timesteps is not Sampler.set_timesteps:
            raise ValueError(
                f"block_length splits the continuous time grid 1 > ... > t_min; {sampler.name!r} has a grid of its own"
            )
        if isinstance(sampler, SemiAutoregressiveSampler):
            raise ValueError("the sampler already runs in blocks")
        self.inner = sampler
        self.needs = sampler.needs
        self.block_length = check_block_length(block_length)
        self.bounds = [(lo, min(lo + block_length, length)) for lo in range(start, length, block_length)]
        self.ends: torch.Tensor | None = None  # the grid time at which each block starts, then the last

    @property
    def num_blocks(self) -> int:
        return len(self.bounds)

    def set_timesteps(self, num_inference_steps, t_min=1e-5, device=None):
        timesteps = super().set_timesteps(num_inference_steps, t_min, device)
        blocks = self.num_blocks
        if num_inference_steps < blocks:
            raise ValueError(
                f"num_inference_steps ({num_inference_steps}) must be at least the number of blocks ({blocks}: "
                f"the generated length over block_length={self.block_length}), one step per block at least"
            )
        share = [num_inference_steps // blocks + int(b < num_inference_steps % blocks) for b in range(blocks)]
        starts = torch.tensor([0, *share], device=timesteps.device).cumsum(0)
        self.ends = timesteps[starts]  # T_{c_0} = 1 > T_{c_1} > ... > T_{c_B} = t_min
        self.inner.set_timesteps(1, t_min, device)  # the local grid ends at t_min (what the inner reads)
        return timesteps

    def _block(self, t: torch.Tensor) -> int:
        if self.ends is None:
            raise ValueError("call set_timesteps before step")
        if not bool((t == t[0]).all()):
            raise ValueError("semi-autoregressive blocks need one time for the whole batch")
        # t in (T_{c_{b+1}}, T_{c_b}]: the boundaries T_{c_1}, ..., T_{c_b} are >= t, T_{c_{b+1}} is not
        return min(int((self.ends[1:] >= t[0]).sum()), self.num_blocks - 1)

    def _local(self, t: torch.Tensor, b: int) -> torch.Tensor:
        hi, lo = self.ends[b].to(t.dtype), self.ends[b + 1].to(t.dtype)
        t_min = self.timesteps[-1].to(t.dtype)
        return t_min + (1 - t_min) * (t - lo) / (hi - lo)

    def step(self, model_output, x_t, t, s, generator=None, uniform_noise=None) -> SamplerOutput:
        b = self._block(t)
        lo, hi = self.bounds[b]
        tau_t, tau_s = self._local(t, b), self._local(s, b)
        noise = None if uniform_noise is None else uniform_noise[:, lo:hi]
        out, x_block = model_output[:, lo:hi], x_t[:, lo:hi]
        block = self.inner.step(out, x_block, tau_t, tau_s, generator, noise).prev_sample
        masked = block == self.graph.mask_token_id if self.graph.absorbing else None
        if bool(s[0] == self.ends[b + 1]) and masked is not None and masked.any():  # the block's last step
            block = torch.where(masked, self.inner.denoise(out, block, tau_s, generator, noise).prev_sample, block)
        x_s = x_t.clone()
        x_s[:, lo:hi] = block
        return SamplerOutput(x_s)

    def denoise(self, model_output, x_t, t, generator=None, uniform_noise=None) -> SamplerOutput:
        return self.inner.denoise(model_output, x_t, t, generator, uniform_noise)


__all__ = ["SemiAutoregressiveSampler", "check_block_length"]
