from .configuration_ctmc import CTMCConfig
from .modeling_ctmc import CTMCForDiffusionLM, CTMCPreTrainedModel

__all__ = ["CTMCConfig", "CTMCForDiffusionLM", "CTMCPreTrainedModel"]
