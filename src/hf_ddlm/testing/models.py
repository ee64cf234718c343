"""Tiny models of every method: the ``MODELS`` table and its one factory, ``tiny_model``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..models.auto import MODELS as REGISTERED_MODELS

TINY_DEFAULTS = dict(
    vocab_size=13,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    cond_dim=16,
    max_position_embeddings=16,
    dropout=0.0,
)


def tiny_config(cls, **overrides):
    """A tiny config of ``cls`` (a config class, or a model class through its ``config_class``)."""
    config_class = getattr(cls, "config_class", cls)
    return config_class(**{**TINY_DEFAULTS, **overrides})


@dataclass(frozen=True)
class ModelSpec:
    """A method's classes and what its tiny test model sets beyond ``TINY_DEFAULTS``."""

    config_class: type
    model_class: type
    tiny_kwargs: dict = field(default_factory=dict)


# what a method's tiny model sets beyond TINY_DEFAULTS (none needs more today: the keys are the
# model_types, and a method missing here gets TINY_DEFAULTS alone)
TINY_KWARGS: dict[str, dict] = {"bd3lm": {"block_size": 4}}

# model_type -> its classes and tiny kwargs, for every method registered with the Auto classes
# (``hf_ddlm.models.auto.MODELS``): a new method is in the table as soon as it is registered
MODELS: dict[str, ModelSpec] = {
    config_class.model_type: ModelSpec(config_class, model_class, TINY_KWARGS.get(config_class.model_type, {}))
    for config_class, model_class in REGISTERED_MODELS
}


def randomize_weights_(
    model: torch.nn.Module, std: float = 0.3, generator: torch.Generator | None = None, perturb_norms: bool = True
) -> torch.nn.Module:
    """Give the zero-initialised parts random values, in place.

    The official inits zero adaLN and the output head (a constant output at first); random values,
    as in the golden files, make every path of the network matter. Draws come from the global
    generator (``normal_``) or, when given, from ``generator``; ``perturb_norms`` also moves the
    LayerNorm weights off 1 (global generator only)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adaLN_modulation" in name or "output_layer.linear" in name:
                if generator is None:
                    p.normal_(0.0, std)
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) * std)
            elif perturb_norms and "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def tiny_model(method: str, seed: int = 0, randomize: bool = True, **overrides):
    """The tiny model of ``method`` (a key of ``MODELS``) in eval mode, seeded, with
    ``randomize_weights_`` applied unless ``randomize=False``. ``overrides`` go to the config."""
    if method not in MODELS:
        raise ValueError(f"method must be one of {sorted(MODELS)}, got {method!r}")
    spec = MODELS[method]
    torch.manual_seed(seed)
    model = spec.model_class(tiny_config(spec.config_class, **{**spec.tiny_kwargs, **overrides}))
    if randomize:
        randomize_weights_(model)
    return model.eval()


__all__ = ["MODELS", "ModelSpec", "TINY_DEFAULTS", "TINY_KWARGS", "randomize_weights_", "tiny_config", "tiny_model"]
