"""BD3-LM configuration (Arriola et al., "Block Diffusion: Interpolating Between Autoregressive and
Diffusion Language Models", ICLR 2025)."""

from __future__ import annotations

from ..configuration_utils import DiffusionConfig

ATTN_BACKENDS = ("sdpa", "flex")


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
        the outputs are the same).
    var_min (`bool`, defaults to True): the model has the two range buffers (official layout).
    """

    model_type = "bd3lm"

    block_size: int = 4
    sampling_eps_min: float = 1e-3
    sampling_eps_max: float = 1.0
    ignore_bos: bool = True
    attn_backend: str = "sdpa"
    var_min: bool = True
    noise_eps: float = 0.0  # mask probability t, as bd3lms' LogLinearNoise (not MDLM's (1 - 1e-3) t)
    time_conditioning: bool = False
    antithetic_sampling: bool = True  # stratified over batch x blocks

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.validate_block_diffusion()

    def validate_block_diffusion(self):
        """Raises ValueError for a block size, noise range or backend this model cannot use."""
        if self.graph != "absorbing":
            raise ValueError("BD3-LM is defined for the absorbing graph only (graph='absorbing')")
        if self.noise_schedule != "loglinear":
            raise ValueError(
                f"BD3-LM uses the log-linear schedule (noise_schedule='loglinear'), got {self.noise_schedule!r}"
            )
        length = self.max_position_embeddings
        if (
            not isinstance(self.block_size, int)
            or isinstance(self.block_size, bool)
            or not 1 <= self.block_size <= length
        ):
            raise ValueError(f"block_size must be an integer in [1, model length = {length}], got {self.block_size!r}")
        if length % self.block_size:
            raise ValueError(f"the model length ({length}) must be a multiple of block_size ({self.block_size})")
        beta, omega = self.sampling_eps_min, self.sampling_eps_max
        if not (0.0 < beta <= 1.0 and 0.0 < omega <= 1.0):
            raise ValueError(
                f"the clipped noise range [sampling_eps_min, sampling_eps_max] must lie in (0, 1], got [{beta}, {omega}]"
            )
        if beta > omega:
            raise ValueError(f"sampling_eps_min ({beta}) must not exceed sampling_eps_max ({omega})")
        if self.attn_backend not in ATTN_BACKENDS:
            raise ValueError(f"attn_backend must be one of {ATTN_BACKENDS}, got {self.attn_backend!r}")

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
