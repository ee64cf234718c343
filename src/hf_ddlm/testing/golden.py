"""Golden vectors: the tensors made by the official codes of SEDD, MDLM and BD3-LM.

They live in ``<repo>/../shared/golden`` (or the folder named by ``HF_DDLM_GOLDEN``). A missing
folder skips the calling test with its reason, or fails it when the environment variable ``CI`` is set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

GOLDEN_ENV = "HF_DDLM_GOLDEN"

# the cases the golden README documents; used when the folder is absent, so that the tests still
# exist (and skip, or fail under CI) instead of silently disappearing
KNOWN_GOLDEN_CASES = {
    "sedd": ["absorb_geometric", "absorb_loglinear", "uniform_geometric", "uniform_loglinear"],
    "mdlm": ["owt_style_tc_false"],
    "bd3lm": ["block4_len16"],
}


# --- golden vectors ---------------------------------------------------------------------------
def golden_dir() -> Path:
    """The golden folder: ``$HF_DDLM_GOLDEN`` if set, else ``<repo>/../shared/golden``."""
    override = os.environ.get(GOLDEN_ENV)
    if override:
        return Path(override)
    # src/hf_ddlm/testing/golden.py -> parents[3] is the repository root
    return Path(__file__).resolve().parents[3].parent / "shared" / "golden"


def golden_cases(family: str) -> list[str]:
    """The case folders of a family (those on disk, else the documented ones)."""
    root = golden_dir() / family
    if root.is_dir():
        found = sorted(p.name for p in root.iterdir() if (p / "expected.safetensors").is_file())
        if found:
            return found
    return list(KNOWN_GOLDEN_CASES.get(family, []))


def _missing(reason: str):
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so missing golden files are an error)")
    pytest.skip(reason)


def load_golden(family: str, case: str):
    """Returns ``(model_dir, inputs, expected, case_json)`` for ``<golden>/<family>/<case>``.

    ``inputs`` and ``expected`` are dicts of CPU tensors. Skips the calling test when the folder
    is absent (fails it when ``CI`` is set).
    """
    from safetensors.torch import load_file

    folder = golden_dir() / family / case
    files = ("config.json", "model.safetensors", "inputs.safetensors", "expected.safetensors", "case.json")
    absent = [f for f in files if not (folder / f).is_file()]
    if absent:
        _missing(
            f"golden case {family}/{case} not found in {folder} (missing {', '.join(absent)}); "
            f"set {GOLDEN_ENV} to the golden folder"
        )
    inputs = load_file(str(folder / "inputs.safetensors"))
    expected = load_file(str(folder / "expected.safetensors"))
    case_json = json.loads((folder / "case.json").read_text())
    return folder, inputs, expected, case_json


__all__ = ["GOLDEN_ENV", "KNOWN_GOLDEN_CASES", "golden_cases", "golden_dir", "load_golden"]
