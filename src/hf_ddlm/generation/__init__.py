from .configuration import DiffusionGenerationConfig
from .infill import parse_infill_pattern
from .mixin import DiffusionGenerateOutput, DiffusionGenerationMixin

__all__ = ["DiffusionGenerateOutput", "DiffusionGenerationConfig", "DiffusionGenerationMixin", "parse_infill_pattern"]
