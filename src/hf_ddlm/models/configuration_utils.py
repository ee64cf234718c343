"""Fields shared by every hf_ddlm config: the DDiT architecture and the forward process.

A config holds what defines the model's distribution (graph, schedule, time conditioning,
objective); sampler settings live in ``generation_config.json`` (``DiffusionGenerationConfig``).
The official checkpoints' names (``hidden_dim``, ``n_blocks``, ``n_heads``, ``model_length``) are
accepted as aliases through ``attribute_map``.
"""

from __future__ import annotations

import dataclasses

from transformers import PreTrainedConfig

from ..processes.graphs import GRAPH_ALIASES, GRAPHS
from ..processes.schedules import SCHEDULES

LOSS_REDUCTIONS = ("token_mean", "sequence_sum")


class DiffusionConfig(PreTrainedConfig):
    attribute_map = {
        "hidden_dim": "hidden_size",
        "n_blocks": "num_hidden_layers",
        "n_heads": "num_attention_heads",
        "model_length": "max_position_embeddings",
    }

    # architecture (the DDiT backbone)
    vocab_size: int = 50258  # every state, the mask token included (GPT-2's 50257 + 1)
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    cond_dim: int = 128  # width of the adaLN conditioning vector
    mlp_ratio: int = 4
    max_position_embeddings: int = 1024  # the training sequence length
    dropout: float = 0.1
    # forward process
    graph: str = "absorbing"  # "absorbing" (mask token = vocab_size - 1) or "uniform"
    mask_token_id: int | None = None  # filled in: vocab_size - 1 for the absorbing graph
    noise_schedule: str = "loglinear"  # "loglinear" or "geometric"
    noise_eps: float = 1e-3  # loglinear: mask probability (1 - eps) t, so sigma(1) stays finite
    sigma_min: float = 1e-4  # geometric only
    sigma_max: float = 20.0  # geometric only
    time_conditioning: bool = True  # False: the backbone is conditioned on sigma = 0 (MDLM)
    # training objective
    sampling_eps: float = 1e-3  # t is drawn in [sampling_eps, 1]
    antithetic_sampling: bool = False  # low-discrepancy t over the batch (MDLM)
    loss_reduction: str = "token_mean"  # or "sequence_sum" (per-sequence sum, batch mean)

    def __post_init__(self, **kwargs):
        self.graph = GRAPH_ALIASES.get(self.graph, self.graph)
        if self.graph not in GRAPHS:
            raise ValueError(f"graph must be one of {sorted(GRAPHS)}, got {self.graph!r}")
        if self.noise_schedule not in SCHEDULES:
            raise ValueError(f"noise_schedule must be one of {sorted(SCHEDULES)}, got {self.noise_schedule!r}")
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {self.loss_reduction!r}")
        if self.graph == "absorbing":
            if self.mask_token_id is None:
                self.mask_token_id = self.vocab_size - 1
            if self.mask_token_id != self.vocab_size - 1:
                raise ValueError(
                    f"mask_token_id must be the last id (vocab_size - 1 = {self.vocab_size - 1}), got {self.mask_token_id}"
                )
        elif self.mask_token_id is not None:
            raise ValueError("mask_token_id must be None for the uniform graph (it has no mask state)")
        if not 0.0 <= self.sampling_eps < 1.0:
            raise ValueError(f"sampling_eps must be in [0, 1), got {self.sampling_eps}")
        if type(self).__module__.startswith("hf_ddlm."):
            # auto_map names a self-contained folder's code files; the library's own classes are
            # in use here, and save_pretrained writes auto_map again only with those files
            kwargs.pop("auto_map", None)
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """``PreTrainedConfig.from_dict``, but overrides of this config's own fields
        (``from_pretrained(path, vocab_size=...)``) are folded in before ``__post_init__``, so they
        are validated and the fields derived from them are derived again: the absorbing mask id
        follows an overridden ``vocab_size`` (transformers would set them afterwards, unchecked)."""
        names = {f.name for f in dataclasses.fields(cls)}
        own = {}
        for key in list(kwargs):
            name = cls.attribute_map.get(key, key)
            if name in names:
                own[name] = kwargs.pop(key)
        if own:
            config_dict = dict(config_dict)
            vocab = config_dict.get("vocab_size")
            if (
                "vocab_size" in own
                and "mask_token_id" not in own
                and vocab is not None
                and config_dict.get("mask_token_id") == vocab - 1
            ):
                config_dict["mask_token_id"] = None  # it was the derived last id: derive it again
            config_dict.update(own)
        return super().from_dict(config_dict, **kwargs)

    def validate_architecture(self):
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})"
            )
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError("the head dimension hidden_size / num_attention_heads must be even (rotary positions)")

    def schedule_kwargs(self) -> dict:
        if self.noise_schedule == "loglinear":
            return {"eps": self.noise_eps}
        if self.noise_schedule == "cosine":
            return {}
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max}
