"""LoRA fine-tuning of hf_ddlm models with PEFT.

PEFT has no default ``target_modules`` for our ``model_type``s, and its ``TaskType.CAUSAL_LM``
wrapper assumes left-to-right generation (it reads ``prepare_inputs_for_generation``), so an
adapter for a diffusion LM is a plain ``PeftModel``: ``task_type`` left unset, explicit targets.
``PeftModel.generate`` then forwards to our ``generate`` with the adapter active.

Target modules of the DDiT backbone (SEDD, MDLM, BD3-LM), by group:

=================  ==========================================================  =========
group              modules (``N`` = block index)                               default
=================  ==========================================================  =========
``attention``      ``backbone.blocks.N.attn_qkv``, ``backbone.blocks.N.attn_out``  yes
``mlp``            ``backbone.blocks.N.mlp.0``, ``backbone.blocks.N.mlp.2``         yes
``conditioning``   ``backbone.blocks.N.adaLN_modulation`` and the final layer's     no
``time_embedding`` ``backbone.sigma_map.mlp.0``, ``backbone.sigma_map.mlp.2``       no
=================  ==========================================================  =========

The output head (``get_output_embeddings()``) is never targeted (train it with
``modules_to_save``). :func:`lora_target_modules` returns the full module names, because the short
suffix ``mlp.0`` would also match the time-embedding MLP ``sigma_map.mlp.0``. Other backbones are
classified by the same name rules (see ``_GROUP_RULES``): a transformers backbone's ``self_attn.q_proj``
... and ``mlp.up_proj`` ..., or GPT-2's ``attn.c_attn`` and ``mlp.c_fc`` (``Conv1D``, adapted with
``fan_in_fan_out=True``).

    from hf_ddlm.peft_utils import get_lora_model
    peft_model = get_lora_model(model, r=8, lora_alpha=16)      # attention + mlp
    ...train with the stock Trainer...
    peft_model.save_pretrained("adapter")                        # adapter_config.json + weights
    merged = peft_model.merge_and_unload()                       # a plain model again
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from torch import nn
from transformers.pytorch_utils import Conv1D

LORA_GROUPS = ("attention", "mlp", "conditioning", "time_embedding")
DEFAULT_LORA_GROUPS = ("attention", "mlp")

# Module types PEFT's LoRA can wrap (peft.tuners.lora.layer.dispatch_default); transformers' Conv1D
# is GPT-2's linear layer (weight stored transposed: LoRA's fan_in_fan_out).
_LORA_SUPPORTED = (nn.Linear, Conv1D, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)

# Classification of a linear module by its dotted name, tried in this order. A name matches a
# group when one of its dotted components matches the group's pattern.
_GROUP_RULES = (
    ("time_embedding", re.compile(r"^(sigma_map|time_embed(ding)?|t_embedder|timestep_embedder)$")),
    ("conditioning", re.compile(r"(?i)^(adaLN_modulation|adaln|modulation|film)$")),
    (
        "attention",
        re.compile(
            r"(?i)^(attn_qkv|attn_out|q_proj|k_proj|v_proj|o_proj|qkv|query|key|value|out_proj|attn|attention|self_attn)$"
        ),
    ),
    ("mlp", re.compile(r"(?i)^(mlp|ffn|feed_forward|fc1|fc2|up_proj|down_proj|gate_proj|w1|w2|w3)$")),
)


def _linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, (nn.Linear, Conv1D))]


def _output_head_names(model: nn.Module) -> set[str]:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name for name, module in model.named_modules() if head is not None and module is head}


def _group_of(name: str) -> str | None:
    parts = name.split(".")
    for group, pattern in _GROUP_RULES:
        if any(pattern.search(part) for part in parts):
            return group
    return None


def lora_target_modules(model: nn.Module, groups: Sequence[str] = DEFAULT_LORA_GROUPS) -> list[str]:
    """The full names of ``model``'s linear modules in ``groups`` (see the module docstring).

    The output head is excluded. Raises ValueError for an unknown group, or for a group that
    matches no module of this model (naming its linear modules).
    """
    if isinstance(groups, str):
        groups = (groups,)
    unknown = [g for g in groups if g not in LORA_GROUPS]
    if unknown:
        raise ValueError(f"groups must be taken from {LORA_GROUPS}, got {unknown}")
    if not groups:
        raise ValueError(f"groups must name at least one of {LORA_GROUPS}")
    head = _output_head_names(model)
    names = [n for n in _linear_names(model) if n not in head]
    by_group = {g: [n for n in names if _group_of(n) == g] for g in groups}
    empty = [g for g, found in by_group.items() if not found]
    if empty:
        raise ValueError(
            f"LoRA groups {empty} match no linear module of {type(model).__name__}; its linear modules are "
            f"{_summarise(names)}; pass target_modules explicitly"
        )
    chosen = set().union(*by_group.values())
    return [n for n in names if n in chosen]  # model order


def _summarise(names: Iterable[str], limit: int = 24) -> str:
    """Names with block indices collapsed (``backbone.blocks.*.attn_qkv``), for error messages."""
    collapsed = sorted({re.sub(r"\.\d+(?=\.)", ".*", n) for n in names})
    shown = collapsed[:limit]
    more = f" (+{len(collapsed) - limit} more)" if len(collapsed) > limit else ""
    return "[" + ", ".join(shown) + "]" + more


def _matches(name: str, target: str) -> bool:
    # PEFT's rule for a list entry: the whole name, or a suffix starting at a dot
    return name == target or name.endswith("." + target)


def check_target_modules(model: nn.Module, target_modules: str | Sequence[str]) -> list[str]:
    """Validate ``target_modules`` against ``model`` with PEFT's matching rules (a list entry matches
    a module whose name equals it or ends with ``.entry``; a string is a regex that must match the
    whole name). Returns the matched module names.

    Raises ValueError naming every entry that matches no module (PEFT itself only complains when
    *no* entry matches), or that matches a module LoRA cannot wrap (such as a block's LayerNorm;
    train that with ``modules_to_save``).
    """
    modules = dict(model.named_modules())
    modules.pop("", None)
    if isinstance(target_modules, str):
        if target_modules == "all-linear":
            head = _output_head_names(model)
            return [n for n in _linear_names(model) if n not in head]
        try:
            pattern = re.compile(target_modules)
        except re.error as error:
            raise ValueError(f"target_modules {target_modules!r} is not a valid regular expression: {error}") from None
        matched = [n for n in modules if pattern.fullmatch(n)]
        if not matched:
            raise ValueError(
                f"target_modules regex {target_modules!r} matches no module of {type(model).__name__}; "
                f"its linear modules are {_summarise(_linear_names(model))}"
            )
        entries = {target_modules: matched}
    else:
        targets = list(target_modules)
        if not targets:
            raise ValueError("target_modules must name at least one module")
        bad_type = [t for t in targets if not isinstance(t, str)]
        if bad_type:
            raise ValueError(f"target_modules entries must be strings, got {bad_type}")
        entries = {t: [n for n in modules if _matches(n, t)] for t in targets}
        missing = [t for t, found in entries.items() if not found]
        if missing:
            raise ValueError(
                f"target_modules entries {missing} match no module of {type(model).__name__}; its linear modules "
                f"are {_summarise(_linear_names(model))} (lora_target_modules(model) lists the recommended ones)"
            )
    unsupported = sorted(
        {
            f"{n} ({type(modules[n]).__name__})"
            for found in entries.values()
            for n in found
            if not isinstance(modules[n], _LORA_SUPPORTED)
        }
    )
    # a regex or suffix may also hit containers (e.g. ``mlp`` itself); PEFT skips nothing, so refuse
    if unsupported:
        raise ValueError(
            f"target_modules match modules LoRA cannot wrap: {unsupported}; target linear layers "
            "(lora_target_modules(model)) and use modules_to_save for the others"
        )
    return sorted({n for found in entries.values() for n in found})


def lora_config(
    model: nn.Module,
    r: int = 8,
    lora_alpha: float = 16,
    lora_dropout: float = 0.0,
    target_modules: str | Sequence[str] | None = None,
    groups: Sequence[str] = DEFAULT_LORA_GROUPS,
    **kwargs,
):
    """A ``peft.LoraConfig`` for ``model`` with validated targets and ``task_type`` unset.

    ``target_modules`` defaults to :func:`lora_target_modules` ``(model, groups)``. Other keyword
    arguments go to ``LoraConfig`` (``modules_to_save``, ``init_lora_weights``, ``use_rslora``...).
    """
    from peft import LoraConfig

    if kwargs.get("task_type") is not None:
        raise ValueError(
            f"task_type must be left unset (None) for diffusion LMs, got {kwargs['task_type']!r}: PEFT's task wrappers "
            "(CAUSAL_LM, ...) assume autoregressive generation; a plain PeftModel forwards generate() to the model"
        )
    kwargs.pop("task_type", None)
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ValueError(f"r must be a positive integer, got {r!r}")
    if target_modules is None:
        target_modules = names = lora_target_modules(model, groups)
    else:
        names = check_target_modules(model, target_modules)
    modules = dict(model.named_modules())
    # GPT-2's Conv1D stores its weight transposed (PEFT would otherwise warn and switch it itself)
    kwargs.setdefault("fan_in_fan_out", any(isinstance(modules[n], Conv1D) for n in names))
    if not isinstance(target_modules, str):
        target_modules = list(target_modules)
    return LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=target_modules, **kwargs)


def get_lora_model(model: nn.Module, config=None, adapter_name: str = "default", **kwargs):
    """Wrap ``model`` in a ``PeftModel`` with LoRA adapters; only the adapter weights (and any
    ``modules_to_save``) remain trainable.

    Pass a ready ``LoraConfig`` as ``config`` (its targets are validated), or keyword arguments of
    :func:`lora_config`.
    """
    from peft import get_peft_model

    if config is None:
        config = lora_config(model, **kwargs)
    else:
        if kwargs:
            raise ValueError(f"pass either config or LoRA keyword arguments, not both (got {sorted(kwargs)})")
        if getattr(config, "task_type", None) is not None:
            raise ValueError(f"config.task_type must be None for diffusion LMs, got {config.task_type!r}")
        if config.target_modules is None:
            raise ValueError(
                "config.target_modules must be set (PEFT has no default for hf_ddlm models); see lora_target_modules"
            )
        check_target_modules(
            model, config.target_modules if isinstance(config.target_modules, str) else sorted(config.target_modules)
        )
    return get_peft_model(model, config, adapter_name=adapter_name)


def load_lora_model(model: nn.Module, adapter_path, is_trainable: bool = False, **kwargs):
    """Load a saved adapter onto ``model`` (the same base weights it was trained on)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_path, is_trainable=is_trainable, **kwargs)


def merge_lora(peft_model):
    """Fold the adapter into the base weights and return the plain model (``merge_and_unload``)."""
    if not hasattr(peft_model, "merge_and_unload"):
        raise ValueError(f"peft_model must be a PeftModel, got {type(peft_model).__name__}")
    return peft_model.merge_and_unload()


def trainable_parameter_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


__all__ = [
    "DEFAULT_LORA_GROUPS",
    "LORA_GROUPS",
    "check_target_modules",
    "count_parameters",
    "get_lora_model",
    "load_lora_model",
    "lora_config",
    "lora_target_modules",
    "merge_lora",
    "trainable_parameter_names",
]
