from .configuration_bd3lm import BD3LMConfig, is_official_bd3lm_config, official_bd3lm_config_to_dict
from .convert_bd3lm_checkpoint import convert_bd3lm_checkpoint
from .modeling_bd3lm import BD3LMForDiffusionLM, BD3LMPreTrainedModel

__all__ = [
    "convert_bd3lm_checkpoint",
    "BD3LMConfig",
    "BD3LMForDiffusionLM",
    "BD3LMPreTrainedModel",
    "is_official_bd3lm_config",
    "official_bd3lm_config_to_dict",
]
