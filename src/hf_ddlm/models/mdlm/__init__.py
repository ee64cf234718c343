from .configuration_mdlm import MDLMConfig
from .modeling_mdlm import MDLMForDiffusionLM, MDLMPreTrainedModel
