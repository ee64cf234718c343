"""BD3-LM configuration (Arriola et al., "Block Diffusion: Interpolating Between Autoregressive and
Diffusion Language Models", ICLR 2025)."""

from __future__ import annotations

from typing import Literal

from ..configuration_utils import (
    AbsorbingGraphName,
    DiffusionConfig,
    Number,
    interval,
    positive,
    strict_config,
)


@strict_config
class BD3LMConfig(DiffusionConfig):
    r"""Defaults are ``kuleshov-group/bd3lm-owt-block_size4``: MDLM's absorbing graph and SUBS
    parameterization applied block by block; mask probability exactly t (log-linear, eps = 0) so the
    NELBO weight is 1/t; no time conditioning.

    block_size (`int`, defaults to 4):
        L', the number of tokens denoised together. 1 is autoregressive, `max_position_embeddings`
        is MDLM. The model length must be a multiple of it.
    sampling_eps_min, sampling_eps_max (`float`, default 1e-3 and 1.0):
        the clipped noise range [beta, omega] that training draws t from (paper sec. 4: the range
        that minimises the variance of the per-block NELBO). Only [1e-3, 1] gives a valid bound;
        `negative_elbo` always integrates over [`sampling_eps`, 1]. beta = omega = 1 is t = 1 (the
        exact NLL of block size 1). The official checkpoints carry the tuned range in the buffers
        `sampling_eps_min/max`, which `from_pretrained` copies here.
    ignore_bos (`bool`, defaults to True, the official setting):
        position 0 (BOS) is never noised and never scored; unconditional generation starts from
        `generation_config.bos_token_id` when set.
    attn_backend (`str`, defaults to "sdpa"):
        "sdpa" (dense boolean mask) or "flex" (FlexAttention BlockMask where usable, else SDPA;
        the outputs are the same). The official configs' name: "flex" does what
        `attn_implementation="flex_attention"` does (transformers' switch, which also picks
        "eager" or "sdpa" for every attention call).
    var_min (`bool`, defaults to True): the model has the two range buffers (official layout).
    """

    model_type = "bd3lm"

    graph: AbsorbingGraphName = "absorbing"  # MDLM's absorbing graph, block by block
    noise_schedule: Literal["loglinear"] = "loglinear"
    # mask probability exactly t, as bd3lms' LogLinearNoise (not MDLM's (1 - 1e-3) t)
    noise_eps: Number = interval(min=0.0, max=1.0, exclude_max=True)(default=0.0)
    block_size: int = positive(default=4)
    sampling_eps_min: Number = interval(min=0.0, max=1.0, exclude_min=True)(default=1e-3)
    sampling_eps_max: Number = interval(min=0.0, max=1.0, exclude_min=True)(default=1.0)
    ignore_bos: bool = True
    attn_backend: Literal["sdpa", "flex"] = "sdpa"
    var_min: bool = True
    time_conditioning: bool = False
    antithetic_sampling: bool = True  # stratified over batch x blocks

    def validate_block_diffusion(self):
        """The rules between fields: the block size divides the model length, beta <= omega."""
        length = self.max_position_embeddings
        if self.block_size > length or length % self.block_size:
            raise ValueError(
                f"block_size ({self.block_size}) must divide the model length (max_position_embeddings = {length})"
            )
        if self.sampling_eps_min > self.sampling_eps_max:
            raise ValueError(
                f"sampling_eps_min ({self.sampling_eps_min}) must not exceed sampling_eps_max ({self.sampling_eps_max})"
            )

    def validate_attention_annealing(self):
        if self.attention_anneal_steps:
            raise ValueError(
                "attention_anneal_steps must be 0 for BD3-LM (model_type 'bd3lm'): its attention is the block mask"
            )

    def validate_shifted_prediction(self):
        """Shifted prediction reads block b's first token from the state before it: in the training
        pass over [x_t ; x0] that is the noisy last token of block b - 1, in decoding its clean
        token, so training and sampling would disagree."""
        if self.shifted_prediction:
            raise ValueError(
                "shifted_prediction=True is not supported by BD3-LM (model_type 'bd3lm'): a block's first token "
                "would be read from the noisy previous block in training but from the clean one in decoding"
            )

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        if is_official_bd3lm_config(config_dict):
            config_dict = official_bd3lm_config_to_dict(config_dict)
        return super().from_dict(config_dict, **kwargs)


def is_official_bd3lm_config(config_dict: dict) -> bool:
    """The ``kuleshov-group/bd3lm-*`` layout: remote-code ``auto_map`` and the ``cross_attn`` key."""
    return config_dict.get("model_type") == "bd3lm" and (
        "cross_attn" in config_dict or config_dict.get("architectures") == ["BD3LM"]
    )


def official_bd3lm_config_to_dict(official: dict) -> dict:
    """Map the official config onto BD3LMConfig: check the keys whose other values this
    implementation does not cover, and drop the remote-code ones. The architecture names
    (``hidden_dim``, ``n_blocks``, ``n_heads``, ``model_length``) are aliases of our fields."""
    config = dict(official)
    # cross_attn: training on [x_t ; x_0] (the only BD3-LM training mode); adaln / causal: the
    # non-causal adaLN DiT. A missing key takes the official default (the Hub bs4 copy has no adaln).
    for key, required in (("cross_attn", True), ("adaln", True), ("causal", False)):
        if config.pop(key, required) != required:
            raise ValueError(
                f"official BD3-LM config: {key}={official[key]!r} is not supported (only {key}={required})"
            )
    for key in ("auto_map", "return_dict", "architectures"):
        config.pop(key, None)
    return config


__all__ = ["BD3LMConfig", "is_official_bd3lm_config", "official_bd3lm_config_to_dict"]
