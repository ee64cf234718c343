from .adaptation import AttentionAnnealingMixin, CausalLMAdaptationMixin, annealed_attention_mask
from .auto import AUTO_MODEL_CLASSES, MODELS, register_auto_classes
from .bd3lm import BD3LMConfig, BD3LMForDiffusionLM
from .configuration_utils import DiffusionConfig, interval, strict_config
from .csm import CSMConfig, CSMForDiffusionLM
from .ctmc import CTMCConfig, CTMCForDiffusionLM
from .d3pm import D3PMConfig, D3PMForDiffusionLM
from .embeddings import VocabularyResizingMixin
from .input_checks import InputChecksMixin
from .loading import StrictLoadingMixin
from .mdlm import MDLMConfig, MDLMForDiffusionLM
from .modeling_utils import DiffusionLMOutput, DiffusionPreTrainedModel, NoisyInputs
from .saving import SelfContainedSavingMixin
from .sedd import SEDDConfig, SEDDForDiffusionLM

__all__ = [
    "AttentionAnnealingMixin",
    "CausalLMAdaptationMixin",
    "annealed_attention_mask",
    "InputChecksMixin",
    "AUTO_MODEL_CLASSES",
    "MODELS",
    "NoisyInputs",
    "SelfContainedSavingMixin",
    "StrictLoadingMixin",
    "VocabularyResizingMixin",
    "interval",
    "register_auto_classes",
    "strict_config",
    "BD3LMConfig",
    "BD3LMForDiffusionLM",
    "CSMConfig",
    "CSMForDiffusionLM",
    "CTMCConfig",
    "CTMCForDiffusionLM",
    "D3PMConfig",
    "D3PMForDiffusionLM",
    "DiffusionConfig",
    "DiffusionLMOutput",
    "DiffusionPreTrainedModel",
    "MDLMConfig",
    "MDLMForDiffusionLM",
    "SEDDConfig",
    "SEDDForDiffusionLM",
]
