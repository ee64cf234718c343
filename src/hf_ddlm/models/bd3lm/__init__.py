from .configuration_bd3lm import BD3LMConfig
from .modeling_bd3lm import BD3LMForDiffusionLM, BD3LMPreTrainedModel
