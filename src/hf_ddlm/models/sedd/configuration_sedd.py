"""SEDD configuration (Lou, Meng & Ermon, "Discrete Diffusion Modeling by Estimating the Ratios of
the Data Distribution", ICML 2024)."""

from __future__ import annotations

from ..configuration_utils import DiffusionConfig, LossReduction, strict_config


@strict_config
class SEDDConfig(DiffusionConfig):
    r"""Defaults are ``sedd-small`` (absorbing graph, log-linear noise, GPT-2 vocabulary + mask).

    scale_by_sigma (`bool`, *optional*):
        Subtract log(e^sigma - 1) + log(V - 1) from the network output (absorbing graph only).
        Defaults to True for the absorbing graph and False for the uniform one, as the official configs.
    """

    model_type = "sedd"

    scale_by_sigma: bool | None = None
    loss_reduction: LossReduction = "sequence_sum"  # the official loss: sum over positions, mean over the batch

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.scale_by_sigma is None:
            self.scale_by_sigma = self.graph == "absorbing"

    def validate_absorbing_only_options(self):
        if self.scale_by_sigma and self.graph != "absorbing":
            raise ValueError("scale_by_sigma=True is only defined for the absorbing graph")
        if not self.time_conditioning and self.graph != "absorbing":
            raise ValueError("time_conditioning=False is only exact for the absorbing graph (RADD)")

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        if is_official_sedd_config(config_dict):
            config_dict = official_sedd_config_to_dict(config_dict)
        return super().from_dict(config_dict, **kwargs)


def is_official_sedd_config(config_dict: dict) -> bool:
    """The official layout (louaaron/sedd-*): the nested Hydra training config, no ``model_type``."""
    return "model_type" not in config_dict and "tokens" in config_dict and isinstance(config_dict.get("model"), dict)


def official_sedd_config_to_dict(official: dict) -> dict:
    """Map the official nested config onto SEDDConfig's fields (only the keys the model reads)."""
    graph = official["graph"]["type"]
    if graph not in ("absorb", "uniform"):
        raise ValueError(f"official SEDD config: graph.type must be 'absorb' or 'uniform', got {graph!r}")
    noise = official.get("noise", {})
    model = official["model"]
    absorbing = graph == "absorb"
    return {
        "model_type": "sedd",
        "vocab_size": official["tokens"] + int(absorbing),
        "graph": "absorbing" if absorbing else "uniform",
        "hidden_size": model["hidden_size"],
        "cond_dim": model["cond_dim"],
        "num_hidden_layers": model["n_blocks"],
        "num_attention_heads": model["n_heads"],
        "max_position_embeddings": model["length"],
        "dropout": model.get("dropout", 0.1),
        "scale_by_sigma": model.get("scale_by_sigma", absorbing),
        "noise_schedule": noise.get("type", "loglinear"),
        "noise_eps": 1e-3,  # hard-coded in the official LogLinearNoise
        "sigma_min": noise.get("sigma_min", 1e-4),
        "sigma_max": noise.get("sigma_max", 20.0),
    }


__all__ = ["SEDDConfig", "is_official_sedd_config", "official_sedd_config_to_dict"]
