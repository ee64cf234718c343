"""``python -m hf_ddlm.cli``: the ``hf-ddlm`` command (e.g. under ``accelerate launch -m``)."""

import sys

from . import main

sys.exit(main())
