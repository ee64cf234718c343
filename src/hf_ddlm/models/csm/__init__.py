from .configuration_csm import CSMConfig
from .modeling_csm import CSMForDiffusionLM, CSMPreTrainedModel

__all__ = ["CSMConfig", "CSMForDiffusionLM", "CSMPreTrainedModel"]
