"""Convert an official SEDD checkpoint folder (``louaaron/sedd-small`` / ``sedd-medium`` layout) to hf_ddlm's.

The official folder holds ``config.json`` (the whole nested Hydra training config, no
``model_type``) and the plain DDiT state dict, as ``pytorch_model.bin`` (the Hub files) or
``model.safetensors`` (huggingface_hub's newer writer), with no key prefix. The output folder holds
our ``config.json`` (``model_type: "sedd"``), ``model.safetensors`` (keys under ``backbone.``),
``generation_config.json`` (the published sampler) and, as every hf_ddlm ``save_pretrained`` folder,
the self-contained code and model card, so ``AutoModel.from_pretrained`` needs no special case
(and transformers alone loads it with ``trust_remote_code=True``). Every key and shape is checked against the model before anything is written, and the
folder appears at once (written to a temporary sibling, then swapped in).

    python -m hf_ddlm.models.sedd.convert_sedd_checkpoint SRC DST [--overwrite]

The helpers here (reading a weights file without unpickling code, the strict key check, the atomic
write) are shared with the MDLM converter.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from ...export.atomic import replace_folder
from ...export.hub import add_remote_code
from ...generation.configuration import DiffusionGenerationConfig
from .configuration_sedd import SEDDConfig, is_official_sedd_config
from .modeling_sedd import SEDDForDiffusionLM

# run_sample.py, the official sampling script: analytic (Tweedie) tau-leaping, 1024 steps down to
# eps = 1e-5, then the denoiser. (The checkpoint's own ``sampling`` block, euler / 128 steps, only
# configures the snapshots drawn during training.)
PUBLISHED_GENERATION_CONFIG = {
    "sampler": "analytic",
    "sampler_kwargs": {},
    "num_inference_steps": 1024,
    "t_min": 1e-5,
    "noise_removal": True,
}

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ValueError(f"{what}: no config.json in {path.parent}")
    return json.loads(path.read_text())


def load_weights(src_dir: Path) -> dict[str, torch.Tensor]:
    """The state dict of ``model.safetensors`` or, failing that, ``pytorch_model.bin``.

    A ``.bin`` is a pickle; ``weights_only=True`` restricts it to tensors and containers, so a
    crafted file cannot run code.
    """
    for name in WEIGHT_FILES:
        path = src_dir / name
        if not path.is_file():
            continue
        if name.endswith(".safetensors"):
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(
                f"src_dir: {path} must hold a flat state dict of tensors (a training checkpoint is not supported)"
            )
        return dict(state)
    raise ValueError(f"src_dir: found none of {', '.join(WEIGHT_FILES)} in {src_dir}")


def check_state_dict(state: dict[str, torch.Tensor], model_class, config, strip_prefix: str = "") -> None:
    """Raise a ValueError naming every missing, unexpected or mis-shaped key (in the source's own
    naming, i.e. without ``strip_prefix``). The reference shapes come from the model built on the
    meta device, so this costs no memory at any size."""
    with torch.device("meta"):
        reference = model_class(config).state_dict()
    expected = {k: tuple(v.shape) for k, v in reference.items()}

    def show(key):
        return key[len(strip_prefix) :] if strip_prefix and key.startswith(strip_prefix) else key

    problems = []
    missing = sorted(show(k) for k in expected.keys() - state.keys())
    unexpected = sorted(show(k) for k in state.keys() - expected.keys())
    mismatched = sorted(
        f"{show(k)} (checkpoint {tuple(state[k].shape)}, model {expected[k]})"
        for k in expected.keys() & state.keys()
        if tuple(state[k].shape) != expected[k]
    )
    not_float = sorted(show(k) for k in state if k in expected and not state[k].is_floating_point())
    for kind, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("mismatched shapes", mismatched),
        ("non-float tensors", not_float),
    ):
        if keys:
            problems.append(f"{kind}: {', '.join(keys)}")
    if problems:
        raise ValueError(f"the checkpoint does not fit {model_class.__name__}: " + "; ".join(problems))


def write_checkpoint(
    dst_dir, config, state: dict[str, torch.Tensor], generation_config, overwrite: bool = False
) -> Path:
    """Write config.json, model.safetensors and generation_config.json into ``dst_dir`` atomically:
    everything goes to a temporary sibling folder that is swapped into place once complete
    (:func:`hf_ddlm.export.atomic.replace_folder`), so an interrupted conversion leaves the old
    folder (or none) or the complete new one, never a half-written checkpoint."""
    dst = Path(dst_dir).absolute()
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"dst_dir {dst} exists and is not a folder")
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise ValueError(f"dst_dir {dst} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    with replace_folder(dst, carry_over=False) as tmp:
        config.save_pretrained(tmp)
        # contiguous, unshared tensors: what safetensors requires
        save_file(
            {k: v.detach().contiguous().clone() for k, v in state.items()},
            tmp / "model.safetensors",
            metadata={"format": "pt"},
        )
        generation_config.save_pretrained(tmp)
        # self-contained like every save_pretrained folder. The code and card need the classes, config
        # and generation config only, so the model is built on the meta device (the weights, checked
        # above, are not read again)
        with torch.device("meta"):
            model = AutoModel.from_config(config)
        model.generation_config = generation_config
        add_remote_code(model, tmp, model_card="keep_foreign")
        # safetensors and the atomic writes may create private modes; give the usual ones under the umask
        umask = os.umask(0)
        os.umask(umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
    return dst


def convert_official_sedd(src_dir, dst_dir, overwrite: bool = False) -> Path:
    """Convert the official SEDD folder ``src_dir`` into an hf_ddlm checkpoint in ``dst_dir``.

    Returns the output folder. Raises ValueError if ``src_dir`` is not an official SEDD folder, if
    its weights do not match the architecture its config describes (every offending key named), or
    if ``dst_dir`` is a non-empty folder and ``overwrite`` is False.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise ValueError(f"src_dir {src} is not a folder")
    official = read_json(src / "config.json", "src_dir")
    if not is_official_sedd_config(official):
        raise ValueError(
            f"src_dir: {src / 'config.json'} is not an official SEDD config (expected the nested training config with "
            "'tokens', 'graph', 'noise' and 'model' and no 'model_type')"
        )
    config = SEDDConfig.from_dict(official)
    config.architectures = [SEDDForDiffusionLM.__name__]
    # the official module is the bare DiT; ours holds it as ``backbone``
    state = {f"backbone.{k}": v for k, v in load_weights(src).items()}
    check_state_dict(state, SEDDForDiffusionLM, config, strip_prefix="backbone.")
    return write_checkpoint(dst_dir, config, state, DiffusionGenerationConfig(**PUBLISHED_GENERATION_CONFIG), overwrite)


def converter_main(convert, prog: str, description: str, src_help: str, argv=None):
    """The command line of a converter: ``SRC_DIR DST_DIR [--overwrite]``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("src_dir", help=src_help)
    parser.add_argument("dst_dir", help="the output folder (created; must be empty unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace dst_dir if it exists")
    args = parser.parse_args(argv)
    out = convert(args.src_dir, args.dst_dir, overwrite=args.overwrite)
    print(f"wrote {out}")


def main(argv=None):
    converter_main(
        convert_official_sedd,
        "python -m hf_ddlm.models.sedd.convert_sedd_checkpoint",
        "Convert an official SEDD checkpoint folder (config.json + pytorch_model.bin or model.safetensors, as in "
        "louaaron/sedd-small) into a self-contained hf_ddlm folder loadable with AutoModel.from_pretrained.",
        "the official folder (a local copy of louaaron/sedd-small or sedd-medium)",
        argv,
    )


__all__ = ["convert_official_sedd", "converter_main", "main"]

if __name__ == "__main__":
    main()
