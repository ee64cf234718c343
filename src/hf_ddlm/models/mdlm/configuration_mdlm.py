"""MDLM configuration (Sahoo et al., "Simple and Effective Masked Diffusion Language Models",
NeurIPS 2024)."""

from __future__ import annotations

from ..configuration_utils import AbsorbingGraphName, DiffusionConfig, strict_config


@strict_config
class MDLMConfig(DiffusionConfig):
    """Defaults are ``mdlm-owt``: absorbing graph, log-linear noise (eps 1e-3), no time conditioning
    (the backbone sees sigma = 0), low-discrepancy t, token-mean NELBO."""

    model_type = "mdlm"

    graph: AbsorbingGraphName = "absorbing"  # MDLM is defined for the absorbing graph only
    time_conditioning: bool = False
    antithetic_sampling: bool = True

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        if config_dict.get("architectures") == ["MDLM"] and "auto_map" in config_dict:
            # the kuleshov-group/mdlm-owt layout: its remote code is replaced by ours
            config_dict = {
                k: v for k, v in config_dict.items() if k not in ("auto_map", "return_dict", "architectures")
            }
        return super().from_dict(config_dict, **kwargs)


__all__ = ["MDLMConfig"]
