from .configuration_mdlm import MDLMConfig
from .modeling_mdlm import MDLMForDiffusionLM, MDLMPreTrainedModel

__all__ = ["MDLMConfig", "MDLMForDiffusionLM", "MDLMPreTrainedModel"]
