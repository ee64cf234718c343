"""MDLM configuration (Sahoo et al., "Simple and Effective Masked Diffusion Language Models",
NeurIPS 2024)."""

from __future__ import annotations

from ..configuration_utils import AbsorbingGraphName, DiffusionConfig, strict_config
from .dream_format import DREAM  # noqa: F401  (importing a format registers it)
from .llada_format import LLADA  # noqa: F401
from .official_formats import find_official_checkpoint, official_format


@strict_config
class MDLMConfig(DiffusionConfig):
    """Defaults are ``mdlm-owt``: absorbing graph, log-linear noise (eps 1e-3), no time conditioning
    (the backbone sees sigma = 0), low-discrepancy t, token-mean NELBO."""

    model_type = "mdlm"

    graph: AbsorbingGraphName = "absorbing"  # MDLM is defined for the absorbing graph only
    time_conditioning: bool = False
    antithetic_sampling: bool = True

    # from_pretrained (StrictLoadingMixin) also loads a LLaDA or Dream folder: MDLM on its decoder
    find_official_checkpoint = staticmethod(find_official_checkpoint)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        fmt = official_format(config_dict)
        if fmt is not None:  # LLaDA / Dream: their architecture as a transformers backbone (official_formats)
            config_dict = fmt.to_mdlm_config(config_dict)
        if config_dict.get("architectures") == ["MDLM"] and "auto_map" in config_dict:
            # the kuleshov-group/mdlm-owt layout: its remote code is replaced by ours
            config_dict = {
                k: v for k, v in config_dict.items() if k not in ("auto_map", "return_dict", "architectures")
            }
        return super().from_dict(config_dict, **kwargs)


__all__ = ["MDLMConfig"]
