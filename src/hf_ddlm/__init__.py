"""hf_ddlm: discrete diffusion language models as Hugging Face models.

Importing the package registers every model with ``AutoConfig``, ``AutoModel`` and
``AutoModelForMaskedLM``.
"""

from .generation import DiffusionGenerateOutput, DiffusionGenerationConfig, DiffusionGenerationMixin
from .models import (
    BD3LMConfig,
    BD3LMForDiffusionLM,
    CSMConfig,
    CSMForDiffusionLM,
    CTMCConfig,
    CTMCForDiffusionLM,
    D3PMConfig,
    D3PMForDiffusionLM,
    DiffusionConfig,
    DiffusionLMOutput,
    DiffusionPreTrainedModel,
    MDLMConfig,
    MDLMForDiffusionLM,
    SEDDConfig,
    SEDDForDiffusionLM,
)
from .models.auto import register_auto_classes

register_auto_classes()

__version__ = "0.1.0"

__all__ = [
    "BD3LMConfig",
    "BD3LMForDiffusionLM",
    "CSMConfig",
    "CSMForDiffusionLM",
    "CTMCConfig",
    "CTMCForDiffusionLM",
    "D3PMConfig",
    "D3PMForDiffusionLM",
    "DiffusionConfig",
    "DiffusionGenerateOutput",
    "DiffusionGenerationConfig",
    "DiffusionGenerationMixin",
    "DiffusionLMOutput",
    "DiffusionPreTrainedModel",
    "MDLMConfig",
    "MDLMForDiffusionLM",
    "SEDDConfig",
    "SEDDForDiffusionLM",
]
