"""Registration with the transformers Auto classes: one line per method.

Official SEDD folders (``louaaron/sedd-*``) carry the whole training config as ``config.json``
with no ``model_type``, which ``AutoConfig`` rejects (SEDD issues #4, #17). We wrap
``AutoConfig.from_pretrained`` so that exactly that case, which would otherwise raise, resolves to
``SEDDConfig``; every other config loads as before.
"""

from __future__ import annotations

import functools

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, PreTrainedConfig

from .bd3lm import BD3LMConfig, BD3LMForDiffusionLM
from .csm import CSMConfig, CSMForDiffusionLM
from .ctmc import CTMCConfig, CTMCForDiffusionLM
from .d3pm import D3PMConfig, D3PMForDiffusionLM
from .mdlm import MDLMConfig, MDLMForDiffusionLM
from .sedd import SEDDConfig, SEDDForDiffusionLM
from .sedd.configuration_sedd import is_official_sedd_config

MODELS = [
    (SEDDConfig, SEDDForDiffusionLM),
    (MDLMConfig, MDLMForDiffusionLM),
    (BD3LMConfig, BD3LMForDiffusionLM),
    (D3PMConfig, D3PMForDiffusionLM),
    (CTMCConfig, CTMCForDiffusionLM),
    (CSMConfig, CSMForDiffusionLM),
]


def _patch_auto_config_for_official_sedd():
    original = AutoConfig.from_pretrained.__func__
    if getattr(original, "_hf_ddlm_patched", False):
        return

    @functools.wraps(original)
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        try:
            return original(cls, pretrained_model_name_or_path, *args, **kwargs)
        except ValueError as error:
            if "model_type" not in str(error):
                raise
            keep = {
                k: v
                for k, v in kwargs.items()
                if k in ("cache_dir", "revision", "token", "local_files_only", "subfolder")
            }
            config_dict, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **keep)
            if not is_official_sedd_config(config_dict):
                raise
            for key in ("code_revision", "trust_remote_code"):
                kwargs.pop(key, None)
            return SEDDConfig.from_pretrained(pretrained_model_name_or_path, **kwargs)

    from_pretrained._hf_ddlm_patched = True
    AutoConfig.from_pretrained = classmethod(from_pretrained)


def register_auto_classes():
    for config_class, model_class in MODELS:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoModelForMaskedLM.register(config_class, model_class, exist_ok=True)
    _patch_auto_config_for_official_sedd()
