"""Samplers: parameter-free objects that turn a model's output at (x_t, t) into x_s (``base.Sampler``).

One file per algorithm: ``analytic`` and ``euler`` (SEDD), ``ancestral`` (MDLM and BD3-LM's
``block_ancestral``), ``first_hitting`` (MDLM and BD3-LM), ``remdm`` (ReMDM remasking), ``tau_leaping``
and ``predictor_corrector`` (CTMC), ``d3pm_ancestral``, ``metropolis_hastings`` (CSM); for masked models
``confidence`` (LLaDA / MaskGIT), ``threshold`` (Fast-dLLM) and ``entropy_bounded`` (EB-sampler), and the
``semi_autoregressive`` wrapper behind ``generate(block_length=...)``. The categorical draws they share live in
``hf_ddlm.categorical``.
"""

from ..categorical import (
    NEG_INFINITY,
    check_nucleus_p,
    draw_categorical_rows,
    draw_revealed_,
    fill_rows_,
    filter_logits,
    neg_infinity,
    official_nucleus,
    race_moving_rows,
    reveal_absorbing,
    sample_categorical,
    sample_categorical_rows,
)
from .analytic import AnalyticSampler, ScoreSampler, tweedie_denoise
from .ancestral import VARIANTS, AncestralSampler
from .base import (
    SAMPLER_ALIASES,
    SAMPLERS,
    LazyProbsOutput,
    Sampler,
    SamplerOutput,
    get_sampler,
    register_sampler,
    register_sampler_alias,
)
from .confidence import ALLOCATIONS, ORDERINGS, ConfidenceSampler, clean_log_probs, commit_top, token_entropy
from .d3pm_ancestral import D3PMAncestralSampler
from .entropy_bounded import EntropyBoundedSampler
from .euler import EulerSampler
from .first_hitting import FirstHittingSampler
from .metropolis_hastings import MetropolisHastingsSampler
from .predictor_corrector import PredictorCorrectorSampler
from .remdm import REMASKING_SCHEDULES, ReMDMSampler
from .semi_autoregressive import SemiAutoregressiveSampler, check_block_length
from .tau_leaping import (
    JUMP_RULES,
    CTMCEulerSampler,
    RateTerms,
    TauLeapingSampler,
    categorical_leap,
    denoise_x0,
    forward_rate_terms,
    full_rates,
    predictor_hazards,
    reverse_rate_terms,
    reverse_rates,
)
from .threshold import ThresholdSampler

__all__ = [
    "JUMP_RULES",
    "ALLOCATIONS",
    "ORDERINGS",
    "VARIANTS",
    "NEG_INFINITY",
    "neg_infinity",
    "SAMPLERS",
    "SAMPLER_ALIASES",
    "AnalyticSampler",
    "AncestralSampler",
    "CTMCEulerSampler",
    "ConfidenceSampler",
    "D3PMAncestralSampler",
    "EntropyBoundedSampler",
    "EulerSampler",
    "FirstHittingSampler",
    "LazyProbsOutput",
    "MetropolisHastingsSampler",
    "PredictorCorrectorSampler",
    "REMASKING_SCHEDULES",
    "RateTerms",
    "ReMDMSampler",
    "Sampler",
    "ScoreSampler",
    "SamplerOutput",
    "SemiAutoregressiveSampler",
    "TauLeapingSampler",
    "ThresholdSampler",
    "categorical_leap",
    "check_block_length",
    "check_nucleus_p",
    "clean_log_probs",
    "commit_top",
    "denoise_x0",
    "draw_categorical_rows",
    "draw_revealed_",
    "fill_rows_",
    "filter_logits",
    "forward_rate_terms",
    "full_rates",
    "get_sampler",
    "official_nucleus",
    "predictor_hazards",
    "race_moving_rows",
    "register_sampler",
    "register_sampler_alias",
    "reveal_absorbing",
    "reverse_rate_terms",
    "reverse_rates",
    "sample_categorical",
    "sample_categorical_rows",
    "token_entropy",
    "tweedie_denoise",
]
