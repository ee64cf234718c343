"""The published large masked-diffusion checkpoints (LLaDA, Dream) read as MDLM on a transformers backbone.

LLaDA (Nie et al. 2025) and Dream (Ye et al. 2025) are masked diffusion with MDLM's loss on a
standard decoder run with bidirectional attention; their folders hold ``config.json`` with their own
``model_type`` (``"llada"`` / ``"Dream"``) and ``auto_map`` to remote code, and weights under their
own names. An ``OfficialFormat`` says how to read one: its config as an ``MDLMConfig`` dict (a
``backbone_config`` of the transformers model with the same computation), each official weight
name as ours with the shape the config implies, and the published sampler. Every path goes through
it:

* ``MDLMConfig.from_dict`` (so ``MDLMConfig.from_pretrained`` and ``AutoConfig``, for which the two
  model types are registered, read the folder as our config);
* ``MDLMForDiffusionLM.from_pretrained`` / ``AutoModel.from_pretrained``: the weight names and
  shapes are checked from the safetensors headers first (an error names every missing, unexpected or
  mis-shaped official key), then loaded under our names; the published sampler becomes the default
  generation config;
* ``convert_official_mdlm`` (``hf-ddlm convert``): a folder in our layout, loadable without this module.

``trust_remote_code=True`` still gives the official code (transformers prefers remote code it is
allowed to run over a registered local class).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file
from transformers import PreTrainedConfig
from transformers.core_model_loading import WeightRenaming

from ...generation.configuration import DiffusionGenerationConfig

WEIGHTS_INDEX = "model.safetensors.index.json"
SPECIAL_TOKENS = ("pad_token_id", "eos_token_id", "bos_token_id")


@dataclass(frozen=True)
class OfficialFormat:
    """How to read one published format (see the module docstring).

    ``to_mdlm_config``: official config.json dict -> MDLMConfig dict (raises ValueError for options
    the mapping does not cover, naming them). ``weights``: official config dict -> {official weight
    name: (our name, shape)}. ``generation_config``: the published sampler, as DiffusionGenerationConfig
    fields. ``read_generation_config``: the folder's own generation_config.json dict -> the fields it
    overrides (its sampler settings in the official code's terms), or None: only its special tokens."""

    name: str
    model_type: str
    to_mdlm_config: Callable[[dict], dict]
    weights: Callable[[dict], dict[str, tuple[str, tuple[int, ...]]]]
    generation_config: dict
    read_generation_config: Callable[[dict], dict] | None = None

    def generation_config_fields(self, folder_config: dict) -> dict:
        """The default generation config of a loaded folder: the published sampler, the folder's
        special tokens, and what its generation_config.json sets in the official code's terms."""
        fields = dict(self.generation_config)
        fields.update({k: folder_config[k] for k in SPECIAL_TOKENS if folder_config.get(k) is not None})
        if self.read_generation_config is not None:
            fields.update(self.read_generation_config(folder_config))
        return fields


FORMATS: dict[str, OfficialFormat] = {}


def register_official_format(fmt: OfficialFormat) -> OfficialFormat:
    FORMATS[fmt.model_type] = fmt
    return fmt


def official_format(config_dict: dict) -> OfficialFormat | None:
    """The format of an official config.json dict (by its ``model_type``), or None."""
    return FORMATS.get(config_dict.get("model_type")) if isinstance(config_dict, dict) else None


def require(official: dict, fmt_name: str, field: str, allowed, default=None):
    """``official[field]`` (or ``default``), which must be one of ``allowed``: the mapping onto a
    transformers backbone covers those values only."""
    value = official.get(field, default)
    if value not in allowed:
        raise ValueError(
            f"{fmt_name} config: {field}={value!r} is not supported (the mapping onto a transformers backbone "
            f"covers {', '.join(repr(a) for a in allowed)})"
        )
    return value


def read_official_config(path, kwargs: dict) -> tuple[dict, OfficialFormat] | None:
    """(config dict, format) when ``path`` (a folder or Hub id) holds an official config.json, else None."""
    if path is None:
        return None
    keys = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
    hub = {k: kwargs[k] for k in keys if k in kwargs}
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(path, **hub)
    except (OSError, ValueError):
        return None
    fmt = official_format(config_dict)
    return (config_dict, fmt) if fmt is not None else None


def weight_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """{name: shape} of every tensor of a safetensors checkpoint folder (one file, or the shards its
    index lists), read from the file headers only."""
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ValueError(
            f"{folder} holds no model.safetensors or {WEIGHTS_INDEX} (official weights are read as safetensors)"
        )
    shapes = {}
    for name in files:
        with safe_open(folder / name, framework="pt") as f:
            for key in f.keys():
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def check_official_weights(fmt: OfficialFormat, official: dict, shapes: dict[str, tuple[int, ...]], source) -> None:
    """Raise a ValueError naming every missing, unexpected or mis-shaped official weight of ``source``."""
    expected = {k: shape for k, (_, shape) in fmt.weights(official).items()}
    problems = []
    missing = sorted(expected.keys() - shapes.keys())
    unexpected = sorted(shapes.keys() - expected.keys())
    mismatched = sorted(
        f"{k} (checkpoint {shapes[k]}, config {expected[k]})"
        for k in expected.keys() & shapes.keys()
        if shapes[k] != expected[k]
    )
    for kind, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("mismatched shapes", mismatched)):
        if keys:
            problems.append(f"{kind}: {', '.join(keys)}")
    if problems:
        raise ValueError(f"{source} is not a valid {fmt.name} checkpoint: " + "; ".join(problems))


def local_folder(path, kwargs: dict) -> Path:
    """The local folder of ``path`` (a folder, or a Hub id resolved into the cache)."""
    folder = Path(os.fspath(path)) / kwargs.get("subfolder", "")
    if folder.is_dir():
        return folder
    from huggingface_hub import snapshot_download

    hub = {
        k: kwargs[k] for k in ("cache_dir", "force_download", "local_files_only", "token", "revision") if k in kwargs
    }
    # the files from_pretrained reads next anyway (into the same cache): configs and safetensors weights
    files = ["*.json", "*.safetensors"]
    return Path(snapshot_download(os.fspath(path), allow_patterns=files, **hub)) / kwargs.get("subfolder", "")


def key_mapping(fmt: OfficialFormat, official: dict) -> dict[str, str]:
    """``from_pretrained``'s ``key_mapping``: each official name (anchored, escaped) -> ours."""
    return {f"^{re.escape(k)}$": ours for k, (ours, _) in fmt.weights(official).items()}


def official_state_dict(fmt: OfficialFormat, official: dict, folder: Path) -> dict:
    """The official weights of ``folder`` under our names (checked first), a tied head included
    under its own name too (as our model's state dict lists it)."""
    check_official_weights(fmt, official, weight_shapes(folder), folder)
    index = folder / WEIGHTS_INDEX
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    )
    names = fmt.weights(official)
    state = {}
    for name in files:
        state.update({names[k][0]: v for k, v in load_file(folder / name).items()})
    config = fmt.to_mdlm_config(official)
    if config["backbone_config"].get("tie_word_embeddings") and "backbone.lm_head.weight" not in state:
        state["backbone.lm_head.weight"] = state["backbone.model.embed_tokens.weight"]
    return state


@dataclass
class OfficialCheckpoint:
    """An official folder about to be loaded by ``from_pretrained`` (``StrictLoadingMixin`` passes
    ``loading_kwargs`` to transformers' loading and calls ``loaded`` on the model)."""

    fmt: OfficialFormat
    official: dict
    path: object

    def loading_kwargs(self, config_class, kwargs: dict) -> dict:
        """The weights checked by name and shape (from the file headers), the config read as
        ``config_class`` (unless given), the official names mapped onto ours as they load, and the
        generation config (unless given): the published sampler with the folder's settings."""
        folder = local_folder(self.path, kwargs)
        check_official_weights(self.fmt, self.official, weight_shapes(folder), self.path)
        kwargs = dict(kwargs)
        if kwargs.get("config") is None:
            kwargs["config"] = config_class.from_dict(self.official)
        kwargs["key_mapping"] = {**key_mapping(self.fmt, self.official), **(kwargs.get("key_mapping") or {})}
        if kwargs.get("generation_config") is None:
            path = folder / "generation_config.json"
            folder_config = {k: self.official.get(k) for k in SPECIAL_TOKENS}
            folder_config.update(json.loads(path.read_text()) if path.is_file() else {})
            kwargs["generation_config"] = DiffusionGenerationConfig(**self.fmt.generation_config_fields(folder_config))
        return kwargs

    def loaded(self, model) -> None:
        """After loading: the model is ours, so ``save_pretrained`` writes our names (transformers
        would otherwise reverse the load-time renaming and write the official ones)."""
        conversions = getattr(model, "_weight_conversions", None)
        if conversions:
            ours = {name for name, _ in self.fmt.weights(self.official).values()}
            model._weight_conversions = [
                c
                for c in conversions
                if not (isinstance(c, WeightRenaming) and any(t in ours for t in c.target_patterns))
            ] or None


def find_official_checkpoint(path, kwargs: dict) -> OfficialCheckpoint | None:
    """The official checkpoint at ``path``, or None (also with ``trust_remote_code=True``, which asks for
    the official code)."""
    if kwargs.get("trust_remote_code"):
        return None
    found = read_official_config(path, kwargs)
    return None if found is None else OfficialCheckpoint(found[1], found[0], path)


__all__ = [
    "FORMATS",
    "OfficialFormat",
    "check_official_weights",
    "OfficialCheckpoint",
    "find_official_checkpoint",
    "official_format",
    "official_state_dict",
    "read_official_config",
    "register_official_format",
    "weight_shapes",
]
