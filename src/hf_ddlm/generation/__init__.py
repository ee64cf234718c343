from .block_decoding import BlockDiffusionGenerateOutput, BlockDiffusionGenerationMixin
from .cache import BlockKVCache, CacheView
from .configuration import DiffusionGenerationConfig
from .infill import parse_infill_pattern
from .mixin import DiffusionGenerateOutput, DiffusionGenerationMixin
from .stopping import (
    StableAndConfidentStoppingCriteria,
    argmax_canvas,
    prepare_stopping_criteria,
    stop_finished_rows,
)
from .utils import (
    AUTOREGRESSIVE_ONLY,
    MAX_INFERENCE_STEPS,
    applicable_samplers,
    build_sampler,
    check_generation_config,
    check_logits_processing,
    clean_columns,
    filter_model_output,
    first_hitting_loop,
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
    "StableAndConfidentStoppingCriteria",
    "argmax_canvas",
    "applicable_samplers",
    "build_sampler",
    "check_generation_config",
    "check_logits_processing",
    "clean_columns",
    "filter_model_output",
    "first_hitting_loop",
    "parse_infill_pattern",
    "prepare_stopping_criteria",
    "repeat_rows",
    "resolve_generator",
    "stop_finished_rows",
    "process_model_output",
    "should_stop",
    "uses_filters",
    "warn_about_long_runs",
]
