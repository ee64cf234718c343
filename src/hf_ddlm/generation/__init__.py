from .block_decoding import BlockDiffusionGenerateOutput, BlockDiffusionGenerationMixin
from .cache import BlockKVCache, CacheView
from .configuration import DiffusionGenerationConfig
from .infill import parse_infill_pattern
from .mixin import DiffusionGenerateOutput, DiffusionGenerationMixin
from .utils import build_sampler, filter_model_output, repeat_rows, resolve_generator

__all__ = [
    "BlockDiffusionGenerateOutput",
    "BlockDiffusionGenerationMixin",
    "BlockKVCache",
    "CacheView",
    "DiffusionGenerateOutput",
    "DiffusionGenerationConfig",
    "DiffusionGenerationMixin",
    "build_sampler",
    "filter_model_output",
    "parse_infill_pattern",
    "repeat_rows",
    "resolve_generator",
]
