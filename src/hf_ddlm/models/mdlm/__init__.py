from .configuration_mdlm import MDLMConfig
from .convert_mdlm_checkpoint import convert_official_mdlm
from .modeling_mdlm import MDLMForDiffusionLM, MDLMPreTrainedModel

__all__ = ["convert_official_mdlm", "MDLMConfig", "MDLMForDiffusionLM", "MDLMPreTrainedModel"]
