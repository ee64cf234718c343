"""Former home of the test helpers, kept so that ``from hf_ddlm.testing_utils import ...`` works:
everything now lives in ``hf_ddlm.testing`` (golden vectors, the tiny-model table, the oracle)."""

from .testing import *  # noqa: F403
from .testing import __all__  # noqa: F401
