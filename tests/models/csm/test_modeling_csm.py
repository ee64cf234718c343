"""The checks every method shares (``DiffusionModelTesterMixin``), run on tiny CSM models."""

from __future__ import annotations

from ..test_modeling_common import DiffusionModelTesterMixin


class TestCSMModel(DiffusionModelTesterMixin):
    """Uniform graph (the defaults)."""

    method = "csm"
