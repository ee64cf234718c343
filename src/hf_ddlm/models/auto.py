"""Registration with the transformers Auto classes: one line per method.

Official SEDD folders (``louaaron/sedd-*``) carry the whole Hydra training config as
``config.json``, with no ``model_type`` (SEDD issues #4, #17). Without patching transformers they load with

* ``SEDDConfig.from_pretrained(folder)`` and ``SEDDForDiffusionLM.from_pretrained(folder)``: the
  class is named, so ``SEDDConfig.from_dict`` maps the nested config onto its fields;
* ``hf-ddlm convert`` (``convert_official_sedd``), which writes our layout with a ``model_type``,
  after which every Auto class loads the folder.

LLaDA and Dream folders (``model_type`` ``"llada"`` / ``"Dream"``, with ``auto_map`` to remote code)
need no patch: those two model types are registered with ``AutoConfig`` by a reader class whose
``from_dict`` returns the ``MDLMConfig`` of the folder (``mdlm.official_formats``), so without
``trust_remote_code`` every Auto class resolves them to ``MDLMForDiffusionLM``, which renames the
weights as it loads them; with ``trust_remote_code=True`` transformers runs the official code.

For SEDD, ``AutoModel.from_pretrained(folder)`` cannot work that way: transformers 5 picks the config class
only from ``auto_map`` (remote code) or ``model_type`` in ``config.json`` and raises otherwise
("Unrecognized model in ..."); it has no hook for a config without ``model_type`` (the old fallback
that matched a model type in the folder's *name* is gone, and ``AutoConfig.register`` is keyed by
``model_type``), and the folders on the Hub are not ours to edit. So one patch remains, narrowed to:

* the two Auto classes hf_ddlm registers its models with, ``AutoModel`` and
  ``AutoModelForMaskedLM`` (``AutoConfig``, which every other Auto class, tokenizer and pipeline
  resolves through, is left as transformers ships it: ``AutoConfig.from_pretrained`` rejects an
  official SEDD folder as before; use ``SEDDConfig.from_pretrained``);
* the case where transformers' own ``from_pretrained`` has raised its missing-``model_type`` error
  and the folder's ``config.json`` is the official SEDD layout (``is_official_sedd_config``): only
  then does it call ``SEDDForDiffusionLM.from_pretrained(folder, ...)``. Every call that succeeds,
  and every other error, is exactly transformers'.
"""

from __future__ import annotations

import functools

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, PreTrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .bd3lm import BD3LMConfig, BD3LMForDiffusionLM
from .csm import CSMConfig, CSMForDiffusionLM
from .ctmc import CTMCConfig, CTMCForDiffusionLM
from .d3pm import D3PMConfig, D3PMForDiffusionLM
from .mdlm import FORMATS, MDLMConfig, MDLMForDiffusionLM
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
AUTO_MODEL_CLASSES = (AutoModel, AutoModelForMaskedLM)
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "revision", "subfolder", "token")


class _OfficialFormatConfig(PreTrainedConfig):
    """The class ``AutoConfig`` finds for a LLaDA / Dream ``model_type``: it reads the folder's
    config.json as the ``MDLMConfig`` it describes (an instance of ``MDLMConfig``, not of this class)."""

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        return MDLMConfig.from_dict(config_dict, **kwargs)


def _official_format_config(model_type: str) -> type:
    return type(f"{FORMATS[model_type].name}FormatConfig", (_OfficialFormatConfig,), {"model_type": model_type})


def _is_official_sedd_folder(pretrained_model_name_or_path, kwargs) -> bool:
    hub = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub)
    except (OSError, ValueError):
        return False
    return is_official_sedd_config(config_dict)


def _load_official_sedd_folders(auto_class):
    """Wrap ``auto_class.from_pretrained`` as the module docstring says (once)."""
    original = auto_class.from_pretrained.__func__
    if getattr(original, "_loads_official_sedd", False):
        return

    @functools.wraps(original)
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        try:
            return original(cls, pretrained_model_name_or_path, *model_args, **kwargs)
        except ValueError as error:
            if "config" in kwargs or "model_type" not in str(error):
                raise
            if not _is_official_sedd_folder(pretrained_model_name_or_path, kwargs):
                raise
        kwargs.pop("code_revision", None)  # an Auto-class argument (remote code), not a model's
        model_class = cls._model_mapping[SEDDConfig]
        return model_class.from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    from_pretrained._loads_official_sedd = True
    auto_class.from_pretrained = classmethod(from_pretrained)


def register_auto_classes():
    for config_class, model_class in MODELS:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        for auto_class in AUTO_MODEL_CLASSES:
            auto_class.register(config_class, model_class, exist_ok=True)
    for model_type in FORMATS:
        if model_type not in CONFIG_MAPPING or not issubclass(CONFIG_MAPPING[model_type], _OfficialFormatConfig):
            AutoConfig.register(model_type, _official_format_config(model_type), exist_ok=True)
    for auto_class in AUTO_MODEL_CLASSES:
        _load_official_sedd_folders(auto_class)


__all__ = ["AUTO_MODEL_CLASSES", "MODELS", "register_auto_classes"]
