from .bd3lm import BD3LMConfig, BD3LMForDiffusionLM
from .configuration_utils import DiffusionConfig
from .csm import CSMConfig, CSMForDiffusionLM
from .ctmc import CTMCConfig, CTMCForDiffusionLM
from .d3pm import D3PMConfig, D3PMForDiffusionLM
from .mdlm import MDLMConfig, MDLMForDiffusionLM
from .modeling_utils import DiffusionLMOutput, DiffusionPreTrainedModel
from .sedd import SEDDConfig, SEDDForDiffusionLM

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
    "DiffusionLMOutput",
    "DiffusionPreTrainedModel",
    "MDLMConfig",
    "MDLMForDiffusionLM",
    "SEDDConfig",
    "SEDDForDiffusionLM",
]
