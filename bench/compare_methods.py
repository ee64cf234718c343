"""The methods compared under equal conditions: a thin wrapper of ``hf-ddlm compare``.

    python bench/compare_methods.py --preset small --output-dir runs/compare          # ~50 min on 2 idle cores
    python bench/compare_methods.py --preset small --output-dir runs/compare --resume  # after a kill
    python bench/compare_methods.py --preset small --output-dir runs/compare --docs    # also docs/comparison.*

Every option of ``hf-ddlm compare --help`` is accepted (dims, steps, --text-file, --device cuda).
"""

from __future__ import annotations

import sys

from hf_ddlm.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
