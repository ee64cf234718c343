"""The checks every method shares (``DiffusionModelTesterMixin``), run on tiny SEDD models."""

from __future__ import annotations

from ..test_modeling_common import DiffusionModelTesterMixin


class TestSEDDModel(DiffusionModelTesterMixin):
    """Absorbing graph, log-linear schedule (the defaults)."""

    method = "sedd"


class TestSEDDUniformModel(DiffusionModelTesterMixin):
    """Uniform graph, geometric schedule."""

    method = "sedd"
    config_overrides = {"graph": "uniform", "noise_schedule": "geometric"}
