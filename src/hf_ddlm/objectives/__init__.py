"""Training objectives, each a per-token loss [B, L] whose sum over positions bounds -log p(x0)
(CSM's J_CSM: a score-matching loss, no bound), and the reduction to a scalar."""

from .concrete_score import (
    concrete_score_explicit_loss,
    concrete_score_first_term,
    concrete_score_implicit_loss,
    sample_neighbours,
)
from .ctmc import SumLogAffineExp, ctmc_exact_elbo, ctmc_one_pass_loss, forward_jump, uniform_ct_elbo
from .d3pm import d3pm_hybrid_loss, d3pm_vb_term
from .masked_nelbo import masked_diffusion_nelbo
from .reduction import reduce_loss
from .score_entropy import denoising_score_entropy

__all__ = [
    "SumLogAffineExp",
    "concrete_score_explicit_loss",
    "concrete_score_first_term",
    "concrete_score_implicit_loss",
    "ctmc_exact_elbo",
    "ctmc_one_pass_loss",
    "d3pm_hybrid_loss",
    "d3pm_vb_term",
    "denoising_score_entropy",
    "forward_jump",
    "masked_diffusion_nelbo",
    "reduce_loss",
    "sample_neighbours",
    "uniform_ct_elbo",
]
