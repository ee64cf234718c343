from .block_decoding import BlockDiffusionGenerateOutput, BlockDiffusionGenerationMixin
from .cache import BlockKVCache, CacheView
from .configuration import DiffusionGenerationConfig
from .infill import parse_infill_pattern
from .mixin import DiffusionGenerateOutput, DiffusionGenerationMixin
from .utils import (
    AUTOREGRESSIVE_ONLY,
    MAX_INFERENCE_STEPS,
    applicable_samplers,
    build_sampler,
    check_generation_config,
    check_logits_processing,
    filter_model_output,
    process_model_output,
    repeat_rows,
    resolve_generator,
    should_stop,
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
    "applicable_samplers",
    "build_sampler",
    "check_generation_config",
    "check_logits_processing",
    "filter_model_output",
    "parse_infill_pattern",
    "process_model_output",
    "repeat_rows",
    "resolve_generator",
    "should_stop",
    "uses_filters",
    "warn_about_long_runs",
]
