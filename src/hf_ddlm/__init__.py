"""hf_ddlm: discrete diffusion language models as Hugging Face models.

Importing the package registers every model with ``AutoConfig``, ``AutoModel`` and
``AutoModelForMaskedLM``.
"""

from .generation import DiffusionGenerateOutput, DiffusionGenerationConfig, DiffusionGenerationMixin
from .likelihood import PerplexityBound, perplexity_bound
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

# names of modules that import heavy dependencies (the Trainer, PEFT, lm-eval): loaded on first use
_LAZY = {
    "DiffusionDataCollator": "hf_ddlm.data",
    "EMACallback": "hf_ddlm.training",
    "LiveDenoisingStreamer": "hf_ddlm.streamers",
    "TextDiffusionStreamer": "hf_ddlm.streamers",
    "TrajectoryStreamer": "hf_ddlm.streamers",
    "get_lora_model": "hf_ddlm.peft_utils",
    "lora_config": "hf_ddlm.peft_utils",
    "load_lora_model": "hf_ddlm.peft_utils",
    "merge_lora": "hf_ddlm.peft_utils",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_ddlm' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    *_LAZY,
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
    "PerplexityBound",
    "SEDDConfig",
    "SEDDForDiffusionLM",
    "perplexity_bound",
]
