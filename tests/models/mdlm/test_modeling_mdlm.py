"""The checks every method shares (``DiffusionModelTesterMixin``), run on tiny MDLM models."""

from __future__ import annotations

from ..test_modeling_common import DiffusionModelTesterMixin


class TestMDLMModel(DiffusionModelTesterMixin):
    """SUBS, log-linear schedule (the defaults)."""

    method = "mdlm"
