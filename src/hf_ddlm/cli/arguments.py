"""Argument types and the arguments several subcommands share, defined once.

The types turn a bad value into argparse's one-line error (exit status 2) naming the argument.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def existing_path(value: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"path '{value}' does not exist")
    return path


def existing_file(value: str) -> Path:
    path = existing_path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"'{value}' is not a file")
    return path


def existing_dir(value: str) -> Path:
    path = existing_path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{value}' is not a folder")
    return path


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {number}")
    return number


def torch_device(value: str) -> str:
    """A torch device that exists on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...)."""
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"'{value}' is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    if device.type == "meta":
        raise argparse.ArgumentTypeError("'meta' holds no weights: pass cpu or an accelerator")
    backend = getattr(torch, device.type, None) if device.type != "mps" else torch.backends.mps
    if device.type != "cpu" and hasattr(backend, "is_available") and not backend.is_available():
        raise argparse.ArgumentTypeError(f"'{value}': {device.type} is not available on this machine; use --device cpu")
    count = getattr(backend, "device_count", None) if device.type != "cpu" else None
    if device.index is not None and count is not None and device.index >= count():
        raise argparse.ArgumentTypeError(f"'{value}': this machine has {count()} {device.type} device(s)")
    return value


def key_value(value: str) -> tuple[str, object]:
    """``key=value`` with the value read as JSON when it parses (``3``, ``true``), else as text."""
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"'{value}' must look like key=value")
    key, raw = value.split("=", 1)
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        parsed = raw
    return key.strip(), parsed


# name -> add_argument keywords of the arguments that several subcommands take
SHARED = {
    "model": {"type": existing_dir, "help": "a model folder"},
    "--tokenizer": {"type": existing_path, "help": "a tokenizer folder (default: the model folder)"},
    "--batch-size": {"type": positive_int, "default": 8},
    "--eval-file": {"type": existing_file, "nargs": "+", "help": "held-out UTF-8 text files"},
    "--eval-samples": {"type": positive_int, "default": 4, "help": "Monte-Carlo draws of t per held-out sequence"},
    "--seed": {"type": int, "default": 0},
    "--device": {
        "type": torch_device,
        "default": None,
        "help": "a torch device (default: cuda when available, else cpu)",
    },
    "--overwrite": {"action": "store_true"},
    "--quiet": {"action": "store_true", "help": "no progress bar"},
}


def add_shared(parser: argparse.ArgumentParser, *names: str, **changes) -> None:
    """Add the shared arguments ``names`` (keys of :data:`SHARED`) to ``parser``, in order.

    ``changes`` override keywords of a single argument: ``add_shared(p, "--batch-size", default=16)``.
    """
    if changes and len(names) != 1:
        raise TypeError("add_shared: keyword changes apply to one argument; name exactly one")
    for name in names:
        parser.add_argument(name, **{**SHARED[name], **changes})


__all__ = [
    "SHARED",
    "add_shared",
    "existing_dir",
    "existing_file",
    "existing_path",
    "key_value",
    "positive_int",
    "torch_device",
]
