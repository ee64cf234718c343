"""The checks every method shares (``DiffusionModelTesterMixin``), run on tiny D3PM models."""

from __future__ import annotations

from ..test_modeling_common import DiffusionModelTesterMixin


class TestD3PMModel(DiffusionModelTesterMixin):
    """Absorbing graph, mixture parameterization (the defaults), T = 8."""

    method = "d3pm"


class TestD3PMPaperModel(DiffusionModelTesterMixin):
    """The paper's parameterization (D3PM eq. 4)."""

    method = "d3pm"
    config_overrides = {"reverse_parameterization": "paper"}


class TestD3PMUniformModel(DiffusionModelTesterMixin):
    """Uniform graph."""

    method = "d3pm"
    config_overrides = {"graph": "uniform"}
