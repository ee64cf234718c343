"""hf_ddlm: discrete diffusion language models as Hugging Face models.

Importing the package registers every model with ``AutoConfig``, ``AutoModel`` and
``AutoModelForMaskedLM``.
"""

from .generation import DiffusionGenerateOutput, DiffusionGenerationConfig, DiffusionGenerationMixin
from .likelihood import LikelihoodMixin, PerplexityBound, perplexity_bound
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
from .parameterizations import sedd_log_score, subs_log_probs
from .pipelines import TASKS, DiffusionFillMaskPipeline, DiffusionTextGenerationPipeline, register_pipelines

register_auto_classes()
register_pipelines()  # pipeline("fill-mask") / ("text-generation") accept hf_ddlm models

# names of modules that import heavy dependencies (the Trainer, PEFT, lm-eval): loaded on first use
_LAZY = {
    "DiffusionDataCollator": "hf_ddlm.data",
    "DiffusionLMEval": "hf_ddlm.lm_eval_adapter",
    "EMACallback": "hf_ddlm.training",
    "EMA_WEIGHTS_NAME": "hf_ddlm.training",
    "cli_evaluate": "hf_ddlm.lm_eval_adapter",
    "DEFAULT_LORA_GROUPS": "hf_ddlm.peft_utils",
    "LORA_GROUPS": "hf_ddlm.peft_utils",
    "check_target_modules": "hf_ddlm.peft_utils",
    "count_parameters": "hf_ddlm.peft_utils",
    "lora_target_modules": "hf_ddlm.peft_utils",
    "trainable_parameter_names": "hf_ddlm.peft_utils",
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
    "TASKS",
    "DiffusionFillMaskPipeline",
    "DiffusionTextGenerationPipeline",
    "register_pipelines",
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
    "LikelihoodMixin",
    "MDLMConfig",
    "MDLMForDiffusionLM",
    "PerplexityBound",
    "SEDDConfig",
    "SEDDForDiffusionLM",
    "perplexity_bound",
    "sedd_log_score",
    "subs_log_probs",
]
