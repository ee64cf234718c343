"""The package's shape (issue 9): files a reader can hold in their head, and every public name
reachable from its package's ``__init__``."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import hf_ddlm

PACKAGE_ROOT = Path(hf_ddlm.__file__).parent
MAX_LINES = 400

# modules whose public names are a protocol of their own package, not a library API: each CLI
# subcommand module exposes add_parser/run (the same names in every module), the converters'
# command-line entry points are all `main`, and testing_utils re-exports hf_ddlm.testing
NOT_REEXPORTED = {
    "hf_ddlm.cli.",
    "hf_ddlm.testing_utils",
    "hf_ddlm.categorical",  # exported by hf_ddlm.samplers, its users' package
}
COMMAND_LINE_NAMES = {"main", "converter_main"}


def _modules():
    for info in pkgutil.walk_packages(hf_ddlm.__path__, "hf_ddlm."):
        if not info.ispkg and not info.name.endswith("__main__"):
            yield info.name


def test_no_source_file_over_the_limit():
    long = {
        str(p.relative_to(PACKAGE_ROOT)): n
        for p in PACKAGE_ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_every_module_declares_all():
    missing = [name for name in _modules() if not hasattr(importlib.import_module(name), "__all__")]
    assert not missing, f"modules without __all__: {missing}"


def test_every_public_name_is_exported_by_its_package():
    gaps = {}
    for name in _modules():
        if any(name == skip or (skip.endswith(".") and name.startswith(skip)) for skip in NOT_REEXPORTED):
            continue
        module = importlib.import_module(name)
        package = importlib.import_module(name.rsplit(".", 1)[0])
        exported = set(getattr(package, "__all__", ()))
        missing = [n for n in module.__all__ if n not in exported and n not in COMMAND_LINE_NAMES]
        if missing and name.rsplit(".", 1)[0] == "hf_ddlm":
            # top-level modules: names of modules with heavy imports are in hf_ddlm's lazy table
            missing = [n for n in missing if n not in hf_ddlm._LAZY]
        if missing:
            gaps[name] = missing
    assert not gaps, f"public names their package does not export: {gaps}"


def test_every_exported_name_resolves():
    for name in [m for m in _modules()] + ["hf_ddlm"]:
        package = importlib.import_module(name.rsplit(".", 1)[0] if name != "hf_ddlm" else name)
        for exported in getattr(package, "__all__", ()):
            assert getattr(package, exported, None) is not None, f"{package.__name__}.{exported}"
