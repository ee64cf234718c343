"""``hf-ddlm convert``: an official checkpoint folder into an hf_ddlm folder, with the converter of
the method (``hf_ddlm.models.<m>.convert_<m>_checkpoint.convert_official_<m>``)."""

from __future__ import annotations

import json
from pathlib import Path

from .arguments import add_shared, existing_dir
from .common import CLIError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert an official checkpoint to hf_ddlm's format",
        description="Convert an official checkpoint folder (louaaron/sedd-*, kuleshov-group/mdlm-owt, a LLaDA or Dream "
        "folder, ...) into an hf_ddlm folder that AutoModel.from_pretrained loads.",
    )
    p.add_argument("src", type=existing_dir)
    p.add_argument("dst", type=Path)
    p.add_argument("--method", default="auto", help="the model_type (sedd, mdlm, ...); default: read from the folder")
    add_shared(p, "--overwrite")
    p.set_defaults(func=run)


def converters() -> dict:
    """model_type -> the official-checkpoint converter of every registered method that has one
    (``hf_ddlm.models.<m>.convert_<m>_checkpoint.convert_official_<m>``)."""
    import importlib

    from ..models.auto import MODELS

    found = {}
    for config_class, _ in MODELS:
        mt = config_class.model_type
        try:
            module = importlib.import_module(f"hf_ddlm.models.{mt}.convert_{mt}_checkpoint")
        except ModuleNotFoundError:
            continue
        function = getattr(module, f"convert_official_{mt}", None)
        if function is not None:
            found[mt] = function
    return found


def _detect_method(src: Path, available) -> str:
    config_path = src / "config.json"
    if not config_path.is_file():
        raise CLIError(f"{src} holds no config.json: not a checkpoint folder")
    config = json.loads(config_path.read_text())
    if config.get("model_type") in available:
        return config["model_type"]
    from ..models.mdlm.official_formats import official_format

    if official_format(config) is not None and "mdlm" in available:  # LLaDA / Dream: MDLM on their decoder
        return "mdlm"
    from ..models.sedd.configuration_sedd import is_official_sedd_config

    if is_official_sedd_config(config) and "sedd" in available:
        return "sedd"
    raise CLIError(f"cannot tell the method of {src}; pass --method (one of {sorted(available)})")


def run(args) -> int:
    available = converters()
    method = args.method if args.method != "auto" else _detect_method(args.src, available)
    if method not in available:
        raise CLIError(f"--method: no converter for '{method}'; available: {sorted(available)}")
    out = available[method](args.src, args.dst, overwrite=args.overwrite)
    print(json.dumps({"method": method, "output_dir": str(out)}))
    return 0


__all__ = ["add_parser", "run", "converters"]
