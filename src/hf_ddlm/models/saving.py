"""Saving: every folder an hf_ddlm model writes is a self-contained Hugging Face Hub folder."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

# keywords of save_pretrained(push_to_hub=True) / push_to_hub that go to the upload
_HUB_KWARGS = ("repo_id", "commit_message", "commit_description", "private", "revision", "create_pr")


class SelfContainedSavingMixin:
    """``save_pretrained`` / ``push_to_hub`` that add the generated code files, ``auto_map`` and the
    model card (``hf_ddlm.export.hub``), so the folder loads with transformers alone."""

    def _exporter(self, self_contained):
        """``hf_ddlm.export.hub`` when this save should write the self-contained code, else None.

        Only hf_ddlm's own classes can be flattened. The exported copy of this file (which runs as
        ``transformers_modules.*`` with no hf_ddlm) saves like any remote-code model: transformers
        copies its code files. The exporter is imported by name, not with an import statement, so
        that the flattener does not pull it into the exported files."""
        if self_contained is False:
            return None
        if not type(self).__module__.startswith("hf_ddlm."):
            if self_contained:
                raise ValueError(
                    f"self_contained=True needs an hf_ddlm model class, got {type(self).__module__}.{type(self).__name__}"
                )
            return None
        return importlib.import_module("hf_ddlm.export.hub")

    def save_pretrained(
        self, save_directory, is_main_process: bool = True, *args, self_contained: bool | None = None, **kwargs
    ):
        """``PreTrainedModel.save_pretrained``, then the folder is made self-contained: the generated
        ``configuration_/generation_/modeling_<model_type>.py``, ``auto_map`` in ``config.json``, the
        sampler in ``generation_config.json`` and a model card ``README.md`` (written unless the folder
        holds a README that hf_ddlm did not generate), so that it loads with transformers alone
        (``trust_remote_code=True``). With hf_ddlm installed, loading without ``trust_remote_code``
        still builds the library's classes. ``self_contained=False`` writes the plain transformers
        folder. ``push_to_hub=True`` uploads after the code is written.

        The self-contained save is atomic: the new folder is written whole into a hidden sibling,
        completed with the old folder's other files (hard links) and swapped with it in one step,
        so that a crash (``kill -9``, power loss) at any moment leaves a folder that loads as the
        old checkpoint or the new one; see :mod:`hf_ddlm.export.atomic` for the exact guarantee
        and the platforms that give it."""
        exporter = self._exporter(self_contained)
        if exporter is None:
            return super().save_pretrained(save_directory, is_main_process, *args, **kwargs)
        # the rank that writes (transformers' rule); under FSDP the others may hold no full weights
        dist = torch.distributed
        writes = is_main_process and not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)
        if writes:  # before anything is written: meta weights hold no values (unless a state_dict is given)
            exporter.check_exportable(self, weights=kwargs.get("state_dict", args[0] if args else None) is None)
        push = kwargs.pop("push_to_hub", False)
        hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        if not writes:
            return super().save_pretrained(save_directory, is_main_process, *args, **kwargs)
        # the new folder is written whole beside the old one and swapped in at once: a crash at any
        # moment leaves the old checkpoint or the new one (hf_ddlm.export.atomic). The old folder's
        # README.md is staged first so that a user's own card is kept
        with exporter.replace_folder(save_directory, keep=("README.md",)) as stage:
            super().save_pretrained(stage, is_main_process, *args, **kwargs)
            exporter.add_remote_code(self, stage, repo_id=hub_kwargs.get("repo_id"), model_card="keep_foreign")
        if push:
            hub_kwargs.setdefault("repo_id", Path(save_directory).name)  # transformers' default
            exporter.upload_folder(save_directory, token=kwargs.get("token"), **hub_kwargs)
        return None

    def push_to_hub(self, repo_id: str, *, self_contained: bool | None = None, **kwargs):
        """``PreTrainedModel.push_to_hub`` that uploads the self-contained folder of
        :meth:`save_pretrained` with its model card (transformers' own would replace the card with a
        generic one). Takes the same keywords: ``commit_message``, ``commit_description``,
        ``private``, ``token``, ``revision``, ``create_pr``, ``max_shard_size``, ``tags``."""
        exporter = self._exporter(self_contained)
        if exporter is None:
            return super().push_to_hub(repo_id, **kwargs)
        unknown = set(kwargs) - set(_HUB_KWARGS) - {"token", "max_shard_size", "tags"}
        if unknown:
            raise TypeError(f"push_to_hub got unexpected keyword arguments {sorted(unknown)}")
        return exporter.push_to_hub(self, repo_id, **kwargs)


__all__ = ["SelfContainedSavingMixin"]
