"""Strict loading: ``from_pretrained`` that refuses a checkpoint which does not fit the model."""

from __future__ import annotations

import os
import warnings

import torch
from safetensors import SafetensorError, safe_open
from transformers import PreTrainedConfig


class StrictLoadingMixin:
    """``from_pretrained`` is strict by default: a checkpoint of another ``model_type``, or a missing,
    unexpected or mis-shaped weight raises an error that names it, official checkpoints included.
    ``strict=False`` gives transformers' warnings instead. A config class with
    ``find_official_checkpoint`` (MDLM: LLaDA and Dream folders) has a published format checked, read
    and renamed on the way in. Always: a truncated or corrupt
    ``*.safetensors`` file is named in the error, and weights holding NaN or inf are named in a warning."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, strict: bool = True, **kwargs):
        want_info = kwargs.pop("output_loading_info", False)
        # a published format the config class reads as its own (MDLM: LLaDA, Dream folders)
        find = getattr(cls.config_class, "find_official_checkpoint", None)
        official = find(pretrained_model_name_or_path, kwargs) if find is not None else None
        if official is not None:
            kwargs = official.loading_kwargs(cls.config_class, kwargs)
        if strict:
            cls._check_model_type(pretrained_model_name_or_path, kwargs)
            kwargs.setdefault("ignore_mismatched_sizes", True)  # reported below, by name, with the other problems
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
        except SafetensorError as error:
            raise ValueError(
                _unreadable_weights(pretrained_model_name_or_path, kwargs.get("subfolder"), error)
            ) from None
        if strict:
            problems = []
            for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
                found = sorted(str(k) for k in info.get(kind, ()) or ())
                if found:
                    problems.append(f"{kind.replace('_', ' ')}: {', '.join(found)}")
            if problems:
                raise ValueError(
                    f"loading {pretrained_model_name_or_path} into {cls.__name__} failed strict loading ("
                    + "; ".join(problems)
                    + ")"
                )
        if official is not None:
            official.loaded(model)
        _warn_about_non_finite_weights(model, pretrained_model_name_or_path)
        return (model, info) if want_info else model

    @classmethod
    def _check_model_type(cls, pretrained_model_name_or_path, kwargs):
        """A checkpoint of another method shares the DiT's parameter names, so its weights would load
        without a missing key: compare the ``model_type`` of its config with this class's."""
        expected = getattr(cls.config_class, "model_type", "")
        if not expected:
            return
        config = kwargs.get("config")
        if config is not None and not isinstance(config, (str, os.PathLike)):
            source, found = f"config ({type(config).__name__})", getattr(config, "model_type", None)
        else:
            source = config if config is not None else pretrained_model_name_or_path
            if source is None:
                return
            hub = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
            try:
                config_dict, _ = PreTrainedConfig.get_config_dict(source, **{k: kwargs[k] for k in hub if k in kwargs})
            except (OSError, ValueError):
                return  # transformers' own loading reports it
            found = config_dict.get("model_type")
        if found and found != expected:
            raise ValueError(
                f"{source} is of model_type {found!r}, but {cls.__name__} is for model_type {expected!r}: load it "
                "with its own class or AutoModel (strict=False loads it anyway)"
            )


def _unreadable_weights(path, subfolder, error) -> str:
    """The message for a ``*.safetensors`` file that does not open, naming the file where it is local."""
    folder = os.path.join(str(path), subfolder or "")
    bad = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".safetensors"):
                file = os.path.join(folder, name)
                try:
                    with safe_open(file, framework="pt"):
                        pass
                except SafetensorError as file_error:
                    bad.append(f"{file} is truncated or corrupt ({file_error})")
    if not bad:
        bad.append(f"a weights file of {path} is truncated or corrupt ({error})")
    return "; ".join(bad) + ": download or save it again"


def _warn_about_non_finite_weights(model, source) -> None:
    bad = [
        name
        for name, tensor in model.state_dict().items()
        if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all()
    ]
    if bad:
        warnings.warn(
            f"the weights loaded from {source} hold NaN or inf values in {len(bad)} tensor(s): {', '.join(bad)}",
            UserWarning,
            stacklevel=3,
        )


__all__ = ["StrictLoadingMixin"]
