from .configuration_bd3lm import BD3LMConfig
from .modeling_bd3lm import BD3LMForDiffusionLM, BD3LMPreTrainedModel

__all__ = ["BD3LMConfig", "BD3LMForDiffusionLM", "BD3LMPreTrainedModel"]
