"""The checks every method shares (``DiffusionModelTesterMixin``), run on tiny BD3-LM models."""

from __future__ import annotations

from ..test_modeling_common import DiffusionModelTesterMixin


class TestBD3LMModel(DiffusionModelTesterMixin):
    """Block size 4."""

    method = "bd3lm"


class TestBD3LMBlock2Model(DiffusionModelTesterMixin):
    """Block size 2."""

    method = "bd3lm"
    config_overrides = {"block_size": 2}
