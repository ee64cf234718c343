from .ancestral import AncestralSampler
from .base import SAMPLERS, Sampler, SamplerOutput, get_sampler, register_sampler
from .categorical import filter_logits, sample_categorical
from .sedd import AnalyticSampler, EulerSampler, tweedie_denoise

__all__ = [
    "SAMPLERS",
    "AncestralSampler",
    "AnalyticSampler",
    "EulerSampler",
    "Sampler",
    "SamplerOutput",
    "filter_logits",
    "get_sampler",
    "register_sampler",
    "sample_categorical",
    "tweedie_denoise",
]
