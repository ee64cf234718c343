"""Fields shared by every hf_ddlm config: the DDiT architecture and the forward process.

A config holds what defines the model's distribution (graph, schedule, time conditioning,
objective); sampler settings live in ``generation_config.json`` (``DiffusionGenerationConfig``).
The official checkpoints' names (``hidden_dim``, ``n_blocks``, ``n_heads``, ``model_length``) are
accepted as aliases through ``attribute_map``.

Validation is declarative, as in transformers' own v5 configs: each field's annotation (``int``,
``Number``, ``bool``, a ``Literal`` of the allowed names) and its validator (``positive``,
``interval``) are checked whenever the field is set, and every ``validate_*`` method (the rules
between fields, ``validate_architecture`` among them) runs after ``__init__`` and at
``save_pretrained``. See :func:`strict_config`.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Literal

from huggingface_hub.dataclasses import strict, validated_field
from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ..processes.graphs import GRAPH_ALIASES, GRAPHS
from ..processes.schedules import SCHEDULES, get_schedule

Number = int | float  # a float field also takes an int: JSON writes 20.0 as 20 (SEDD's sigma_max)
GraphName = Literal[(*GRAPHS, *GRAPH_ALIASES)]
ScheduleName = Literal[tuple(SCHEDULES)]
AbsorbingGraphName = Literal["absorbing", "absorb"]  # a method defined for the absorbing graph only
LossReduction = Literal["token_mean", "sequence_sum"]  # sequence_sum: per-sequence sum, batch mean


class _OutOfRange(ValueError):
    """Raised by the validators of this module; the message reads after the field name."""


def interval(min=None, max=None, exclude_min=False, exclude_max=False):
    """A field factory, ``x: Number = interval(min=0.0, max=1.0, exclude_max=True)(default=1e-3)``
    (the form of ``transformers.utils.type_validators.interval``): the value must lie in the
    interval. ``None`` passes (a default that ``__post_init__`` fills in)."""
    if min is not None and max is not None:
        allowed = f"in {'(' if exclude_min else '['}{min}, {max}{')' if exclude_max else ']'}"
    elif min is not None:
        allowed = f"{'>' if exclude_min else '>='} {min}"
    else:
        allowed = f"{'<' if exclude_max else '<='} {max}"

    def check(value):
        if value is None:
            return
        below = min is not None and (value <= min if exclude_min else value < min)
        above = max is not None and (value >= max if exclude_max else value > max)
        if below or above:
            raise _OutOfRange(f"must be {allowed}")

    def field(default=dataclasses.MISSING):
        return validated_field(check, default=default)

    return field


positive = interval(min=0, exclude_min=True)  # ``n: int = positive(default=12)``: an int (or number) > 0


def _allowed(annotation) -> str:
    """What a type annotation allows, in words (for the error messages)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return f"one of {list(args)}"
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        words = ["a number"] if set(kinds) == {int, float} else [_allowed(a) for a in kinds]
        return " or ".join(words + (["None"] if len(kinds) < len(args) else []))
    names = {int: "an integer", float: "a float", bool: "True or False", str: "a string", list: "a list"}
    return names.get(origin or annotation, str(annotation))


def strict_config(cls):
    """huggingface_hub's ``@strict`` for a config class, as transformers applies it to its own
    configs, with two adaptations:

    * annotations written as strings (``from __future__ import annotations``, also added by the
      Hub export) are resolved first, else ``@strict`` would skip their type checks;
    * a failure is raised as a ``ValueError`` naming the field, what it allows and the value
      (``noise_schedule must be one of [...], got 'bogus'``), the form of every error in hf_ddlm,
      instead of huggingface_hub's ``StrictDataclass*Error`` (which are not ValueErrors).

    Every config class must carry it (subclasses too): ``@strict`` collects the fields and the
    ``validate_*`` methods of the class it decorates.
    """
    module = sys.modules.get(cls.__module__)
    own = cls.__dict__.get("__annotations__", {})
    for f in dataclasses.fields(cls):
        if isinstance(f.type, str) and f.name in own and module is not None:
            f.type = eval(f.type, vars(module))  # what typing.get_type_hints does, for one field
    cls = strict(cls)
    checked_setattr, checked_validate = cls.__setattr__, cls.validate

    def __setattr__(self, name, value):
        name = self.attribute_map.get(name, name)  # an official alias (n_heads) is checked as its field
        try:
            checked_setattr(self, name, value)
        except StrictDataclassFieldValidationError as error:
            cause = error.__cause__
            if isinstance(cause, _OutOfRange):
                message = f"{name} {cause}, got {value!r}"
            elif isinstance(cause, TypeError) and name in self.__dataclass_fields__:
                message = f"{name} must be {_allowed(self.__dataclass_fields__[name].type)}, got {value!r}"
            else:
                message = f"{name}: {cause}"
            raise ValueError(message) from None

    def validate(self):
        try:
            checked_validate(self)
        except StrictDataclassClassValidationError as error:
            raise error.__cause__ from None  # the validate_* method's own ValueError

    validate.__is_defined_by_strict_decorator__ = True  # lets ``@strict`` decorate subclasses again
    cls.__setattr__, cls.validate = __setattr__, validate
    return cls


@strict_config
class DiffusionConfig(PreTrainedConfig):
    attribute_map = {
        "hidden_dim": "hidden_size",
        "n_blocks": "num_hidden_layers",
        "n_heads": "num_attention_heads",
        "model_length": "max_position_embeddings",
    }
    # the denoiser: None = the DiT; else any transformers base model, a nested sub-config as in
    # transformers' composite configs (saved inside config.json, rebuilt by AutoConfig)
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="llama", optional=True)
    }

    # architecture (the DDiT backbone)
    vocab_size: int = positive(default=50258)  # every state, the mask token included (GPT-2's 50257 + 1)
    hidden_size: int = positive(default=768)
    num_hidden_layers: int = positive(default=12)
    num_attention_heads: int = positive(default=12)
    cond_dim: int = positive(default=128)  # width of the adaLN conditioning vector
    mlp_ratio: int = positive(default=4)
    max_position_embeddings: int = positive(default=1024)  # the training sequence length
    dropout: Number = interval(min=0.0, max=1.0)(default=0.1)
    # forward process
    graph: GraphName = "absorbing"  # "absorbing" (mask token = vocab_size - 1) or "uniform"
    mask_token_id: int | None = None  # filled in: vocab_size - 1 for the absorbing graph
    noise_schedule: ScheduleName = "loglinear"  # its parameters: the fields its class lists in config_fields
    noise_eps: Number = interval(min=0.0, max=1.0, exclude_max=True)(default=1e-3)  # loglinear: (1 - eps) t
    sigma_min: Number = positive(default=1e-4)  # geometric only
    sigma_max: Number = positive(default=20.0)  # geometric only
    time_conditioning: bool = True  # False: the backbone is conditioned on sigma = 0 (MDLM)
    # training objective
    sampling_eps: Number = interval(min=0.0, max=1.0, exclude_max=True)(default=1e-3)  # t ~ U[sampling_eps, 1]
    antithetic_sampling: bool = False  # low-discrepancy t over the batch (MDLM)
    loss_reduction: LossReduction = "token_mean"
    # backbone (hf_ddlm.backbones.build_backbone): a transformers model's config, or None for the DiT
    backbone_config: dict | PreTrainedConfig | None = None
    # position i's output read from the hidden state at i - 1 (position 0: its own), as DiffuGPT,
    # DiffuLLaMA and Dream do, so that a pretrained next-token head is used as it was trained
    shifted_prediction: bool = False
    # DiffuLLaMA's attention-mask annealing: causal -> full over this many training forwards (0: off)
    attention_anneal_steps: int = interval(min=0)(default=0)

    def __post_init__(self, **kwargs):
        self._resolve_backbone_config()
        self.graph = GRAPH_ALIASES.get(self.graph, self.graph)
        if self.graph == "absorbing" and self.mask_token_id is None:
            self.mask_token_id = self.vocab_size - 1
        if type(self).__module__.startswith("hf_ddlm."):
            # auto_map names a self-contained folder's code files; the library's own classes are
            # in use here, and save_pretrained writes auto_map again only with those files
            kwargs.pop("auto_map", None)
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """``PreTrainedConfig.from_dict``, but overrides of this config's own fields
        (``from_pretrained(path, vocab_size=...)``) are folded in before ``__init__``, so they
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

    # the fields a transformers backbone defines: derived from backbone_config, or checked against it
    BACKBONE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")

    def _resolve_backbone_config(self):
        """A dict ``backbone_config`` becomes its ``PreTrainedConfig`` (by its ``model_type``), and the
        fields the backbone defines (``BACKBONE_FIELDS``) are read from it: a field left at its
        default is derived, one set to another value is an error (two sources of one number)."""
        backbone = self.backbone_config
        if backbone is None:
            return
        if isinstance(backbone, dict):
            model_type = backbone.get("model_type")
            from transformers.models.auto.configuration_auto import CONFIG_MAPPING

            if model_type not in CONFIG_MAPPING:
                raise ValueError(
                    "backbone_config must be a PreTrainedConfig or a dict with the model_type of a transformers "
                    f"model, got model_type {model_type!r}"
                )
            backbone = CONFIG_MAPPING[model_type].from_dict(backbone)
            self.backbone_config = backbone
        defaults = {f.name: f.default for f in dataclasses.fields(type(self))}
        for name in self.BACKBONE_FIELDS:
            value = getattr(backbone, name, None)
            if value is None:
                continue
            if getattr(self, name) not in (defaults[name], value):
                raise ValueError(
                    f"{name} ({getattr(self, name)}) must equal backbone_config.{name} ({value}) or be left unset "
                    "(it is read from backbone_config)"
                )
            setattr(self, name, value)

    def validate_backbone(self):
        """A transformers backbone has no input for the time (LLaDA, Dream and MDLM's published models
        are not time-conditioned); shifted prediction reuses a pretrained next-token head, which only
        a transformers backbone has."""
        if self.backbone_config is None:
            if self.shifted_prediction:
                raise ValueError(
                    "shifted_prediction=True needs a backbone_config (a transformers decoder whose next-token head "
                    "it reuses); the DiT backbone has none"
                )
            return
        if not isinstance(self.backbone_config, PreTrainedConfig):
            raise ValueError(f"backbone_config must be a PreTrainedConfig or a dict, got {self.backbone_config!r}")
        if self.time_conditioning:
            raise ValueError(
                "time_conditioning must be False with a backbone_config: a transformers backbone has no input for "
                "the noise level"
            )
        for name in self.BACKBONE_FIELDS:
            value = getattr(self.backbone_config, name, None)
            if value is not None and getattr(self, name) != value:
                raise ValueError(f"{name} ({getattr(self, name)}) must equal backbone_config.{name} ({value})")

    def validate_architecture(self):
        super().validate_architecture()
        if self.backbone_config is not None:
            return  # the DiT's constraints; a transformers backbone checks its own config
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})"
            )
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError(
                f"the head dimension hidden_size / num_attention_heads = {self.hidden_size // self.num_attention_heads}"
                " must be even (rotary positions rotate pairs of channels)"
            )

    def validate_mask_token_id(self):
        if self.graph == "absorbing" and getattr(self, "backbone_config", None) is not None:
            # a transformers backbone may keep the mask inside its vocabulary (LLaDA, Dream, a causal LM's token)
            if not isinstance(self.mask_token_id, int) or not 0 <= self.mask_token_id < self.vocab_size:
                raise ValueError(f"mask_token_id must be an id in [0, {self.vocab_size}), got {self.mask_token_id!r}")
        elif self.graph == "absorbing" and self.mask_token_id != self.vocab_size - 1:
            raise ValueError(
                f"mask_token_id must be the last id (vocab_size - 1 = {self.vocab_size - 1}), got {self.mask_token_id}"
            )
        if self.graph == "uniform" and self.mask_token_id is not None:
            raise ValueError("mask_token_id must be None for the uniform graph (it has no mask state)")

    def validate_noise_schedule(self):
        """The schedule's own checks on its parameters (e.g. sigma_min < sigma_max)."""
        get_schedule(self.noise_schedule, **self.schedule_kwargs())

    def schedule_kwargs(self) -> dict:
        """The arguments of the ``noise_schedule`` class, read from the config fields it names in
        ``config_fields`` (``get_schedule(config.noise_schedule, **config.schedule_kwargs())``)."""
        return {arg: getattr(self, name) for arg, name in SCHEDULES[self.noise_schedule].config_fields.items()}


__all__ = ["DiffusionConfig", "interval", "strict_config"]
