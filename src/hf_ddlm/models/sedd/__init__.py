from .configuration_sedd import SEDDConfig, is_official_sedd_config, official_sedd_config_to_dict
from .convert_sedd_checkpoint import convert_official_sedd
from .modeling_sedd import SEDDForDiffusionLM, SEDDPreTrainedModel

__all__ = [
    "convert_official_sedd",
    "SEDDConfig",
    "SEDDForDiffusionLM",
    "SEDDPreTrainedModel",
    "is_official_sedd_config",
    "official_sedd_config_to_dict",
]
