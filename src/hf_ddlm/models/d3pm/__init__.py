from .configuration_d3pm import D3PMConfig
from .modeling_d3pm import D3PMForDiffusionLM, D3PMPreTrainedModel

__all__ = ["D3PMConfig", "D3PMForDiffusionLM", "D3PMPreTrainedModel"]
