from .configuration import DiffusionGenerationConfig
from .mixin import DiffusionGenerateOutput, DiffusionGenerationMixin

__all__ = ["DiffusionGenerateOutput", "DiffusionGenerationConfig", "DiffusionGenerationMixin"]
