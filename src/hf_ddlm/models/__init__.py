from .configuration_utils import DiffusionConfig
from .mdlm import MDLMConfig, MDLMForDiffusionLM
from .modeling_utils import DiffusionLMOutput, DiffusionPreTrainedModel
from .sedd import SEDDConfig, SEDDForDiffusionLM
