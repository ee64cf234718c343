"""Resumable training state of one method, written atomically as one folder.

``checkpoint/`` holds ``model.safetensors`` (the weights), ``optimizer.safetensors`` (AdamW's
moments and step counts), ``rng.safetensors`` (the torch RNG states: the diffusion time and noise
of the next step are drawn from them) and ``state.json`` (step, history, training seconds, the
scheduler's and the optimiser's scalar state). :func:`hf_ddlm.export.atomic.replace_folder` swaps
the whole folder in at once, so a kill at any moment leaves the previous or the new checkpoint.
Restoring all of it makes the resumed run continue bit for bit as the uninterrupted one would (on
the same machine, thread count and library versions).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from ..export.atomic import replace_folder


def save_checkpoint(folder, model, optimizer, scheduler, state: dict) -> None:
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in opt["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    meta = {
        **state,
        "scheduler": scheduler.state_dict(),
        "param_groups": opt["param_groups"],
        "optimizer_scalars": scalars,
    }
    with replace_folder(folder, carry_over=False) as stage:
        save_model(model, str(stage / "model.safetensors"))
        save_file(tensors, str(stage / "optimizer.safetensors"))
        save_file(rng, str(stage / "rng.safetensors"))
        (stage / "state.json").write_text(json.dumps(meta))


def load_checkpoint(folder, model, optimizer, scheduler) -> dict:
    """Restore ``model``, ``optimizer``, ``scheduler`` and the RNG states; returns the saved state
    (step, history, train_seconds)."""
    folder = Path(folder)
    meta = json.loads((folder / "state.json").read_text())
    load_model(model, str(folder / "model.safetensors"), device=str(next(model.parameters()).device))
    state: dict = {}
    for name, value in load_file(str(folder / "optimizer.safetensors")).items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta.pop("optimizer_scalars").items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    scheduler.load_state_dict(meta.pop("scheduler"))
    rng = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(rng["cpu"])
    cuda = [rng[k] for k in sorted((k for k in rng if k.startswith("cuda.")), key=lambda k: int(k.split(".")[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    return meta


__all__ = ["load_checkpoint", "save_checkpoint"]
