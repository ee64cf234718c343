"""Strict loading: ``from_pretrained`` that refuses a checkpoint which does not fit the model."""

from __future__ import annotations


class StrictLoadingMixin:
    """``from_pretrained`` is strict by default: a missing, unexpected or mis-shaped weight raises
    an error that names it, official checkpoints included. ``strict=False`` gives transformers'
    warnings instead."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, strict: bool = True, **kwargs):
        want_info = kwargs.pop("output_loading_info", False)
        if strict:  # report mis-shaped weights ourselves, by name, with the other problems
            kwargs.setdefault("ignore_mismatched_sizes", True)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
        )
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
        return (model, info) if want_info else model


__all__ = ["StrictLoadingMixin"]
