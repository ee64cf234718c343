from .configuration_mdlm import MDLMConfig
from .convert_mdlm_checkpoint import convert_official_mdlm
from .dream_format import DREAM, dream_generation_config, dream_to_mdlm_config, dream_weights
from .llada_format import LLADA, llada_to_mdlm_config, llada_weights
from .modeling_mdlm import MDLMForDiffusionLM, MDLMPreTrainedModel
from .official_formats import (
    FORMATS,
    OfficialCheckpoint,
    OfficialFormat,
    check_official_weights,
    find_official_checkpoint,
    official_format,
    official_state_dict,
    read_official_config,
    register_official_format,
    weight_shapes,
)

__all__ = [
    "DREAM",
    "FORMATS",
    "LLADA",
    "MDLMConfig",
    "MDLMForDiffusionLM",
    "MDLMPreTrainedModel",
    "OfficialCheckpoint",
    "OfficialFormat",
    "check_official_weights",
    "find_official_checkpoint",
    "convert_official_mdlm",
    "dream_generation_config",
    "dream_to_mdlm_config",
    "dream_weights",
    "llada_to_mdlm_config",
    "llada_weights",
    "official_format",
    "official_state_dict",
    "read_official_config",
    "register_official_format",
    "weight_shapes",
]
