from .configuration_sedd import SEDDConfig
from .modeling_sedd import SEDDForDiffusionLM, SEDDPreTrainedModel

__all__ = ["SEDDConfig", "SEDDForDiffusionLM", "SEDDPreTrainedModel"]
