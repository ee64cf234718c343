from .block_decoding import BlockDiffusionGenerateOutput, BlockDiffusionGenerationMixin
from .cache import BlockKVCache, CacheView
from .configuration import DiffusionGenerationConfig
from .infill import parse_infill_pattern
from .mixin import DiffusionGenerateOutput, DiffusionGenerationMixin
from .utils import (
    AUTOREGRESSIVE_ONLY,
    MAX_INFERENCE_STEPS,
    build_sampler,
    check_generation_config,
    filter_model_output,
    repeat_rows,
    resolve_generator,
    uses_filters,
    warn_about_long_runs,
)

__all__ = [
    "AUTOREGRESSIVE_ONLY",
    "MAX_INFERENCE_STEPS",
    "BlockDiffusionGenerateOutput",
    "BlockDiffusionGenerationMixin",
    "BlockKVCache",
    "CacheView",
    "DiffusionGenerateOutput",
    "DiffusionGenerationConfig",
    "DiffusionGenerationMixin",
    "build_sampler",
    "check_generation_config",
    "filter_model_output",
    "parse_infill_pattern",
    "repeat_rows",
    "resolve_generator",
    "uses_filters",
    "warn_about_long_runs",
]
