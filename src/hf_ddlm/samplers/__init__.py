from .ancestral import AncestralSampler
from .base import SAMPLERS, Sampler, SamplerOutput, get_sampler, register_sampler
from .block_ancestral import BlockAncestralSampler
from .categorical import filter_logits, sample_categorical
from .d3pm_ancestral import D3PMAncestralSampler
from .first_hitting import FirstHittingSampler, official_nucleus
from .metropolis_hastings import MetropolisHastingsSampler
from .predictor_corrector import PredictorCorrectorSampler
from .sedd import AnalyticSampler, EulerSampler, tweedie_denoise
from .tau_leaping import CTMCEulerSampler, TauLeapingSampler

__all__ = [
    "SAMPLERS",
    "AncestralSampler",
    "AnalyticSampler",
    "CTMCEulerSampler",
    "BlockAncestralSampler",
    "D3PMAncestralSampler",
    "EulerSampler",
    "MetropolisHastingsSampler",
    "PredictorCorrectorSampler",
    "FirstHittingSampler",
    "Sampler",
    "SamplerOutput",
    "TauLeapingSampler",
    "filter_logits",
    "get_sampler",
    "official_nucleus",
    "register_sampler",
    "sample_categorical",
    "tweedie_denoise",
]
