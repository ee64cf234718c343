"""The checks every method shares (``DiffusionModelTesterMixin``), run on tiny CTMC models."""

from __future__ import annotations

from ..test_modeling_common import DiffusionModelTesterMixin


class TestCTMCModel(DiffusionModelTesterMixin):
    """Uniform graph, the official one-forward-pass estimator (the defaults)."""

    method = "ctmc"


class TestCTMCExactModel(DiffusionModelTesterMixin):
    """The exact CT-ELBO estimator."""

    method = "ctmc"
    config_overrides = {"ctmc_estimator": "exact"}


class TestCTMCAbsorbingModel(DiffusionModelTesterMixin):
    """Absorbing graph (log-linear schedule)."""

    method = "ctmc"
    config_overrides = {"graph": "absorbing"}
