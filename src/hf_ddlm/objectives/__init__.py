"""Training objectives, each a per-token loss [B, L] whose sum over positions bounds -log p(x0)."""

from .masked_nelbo import masked_diffusion_nelbo
from .score_entropy import denoising_score_entropy

__all__ = ["denoising_score_entropy", "masked_diffusion_nelbo"]
