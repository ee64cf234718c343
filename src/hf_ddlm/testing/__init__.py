"""Helpers for the test suite (and for anyone testing a model built on hf_ddlm).

* ``golden``: the official codes' tensors (``golden_dir``, ``golden_cases``, ``load_golden``);
* ``models``: the ``MODELS`` table (method -> config class, model class, tiny kwargs) and the one
  tiny-model factory ``tiny_model`` (``tiny_config`` for a config alone);
* ``oracle``: the one enumeration oracle ``ExactOracle`` and ``oracle_model``, a model driven by it.
"""

from .golden import GOLDEN_ENV, KNOWN_GOLDEN_CASES, golden_cases, golden_dir, load_golden
from .models import MODELS, TINY_DEFAULTS, TINY_KWARGS, ModelSpec, randomize_weights_, tiny_config, tiny_model
from .oracle import ExactOracle, OracleBackbone, all_states, kernel_from_probs, oracle_model, state_index, tv_distance

__all__ = [
    "TINY_KWARGS",
    "GOLDEN_ENV",
    "KNOWN_GOLDEN_CASES",
    "MODELS",
    "TINY_DEFAULTS",
    "ExactOracle",
    "ModelSpec",
    "OracleBackbone",
    "all_states",
    "golden_cases",
    "golden_dir",
    "kernel_from_probs",
    "load_golden",
    "oracle_model",
    "randomize_weights_",
    "state_index",
    "tiny_config",
    "tiny_model",
    "tv_distance",
]
