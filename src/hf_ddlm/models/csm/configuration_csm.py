"""Concrete Score Matching configuration (Meng, Choi, Song & Ermon, "Concrete Score Matching:
Generalized Score Matching for Discrete Data", NeurIPS 2022)."""

from __future__ import annotations

from typing import Literal

from ..configuration_utils import DiffusionConfig, positive, strict_config


@strict_config
class CSMConfig(DiffusionConfig):
    r"""The concrete score c_theta(x) over Hamming-1 neighbours as a D x S table from the DDiT backbone.

    CSM is not a diffusion: there is no noise, no time (the backbone sees 0) and no likelihood bound.
    ``graph`` must be ``"uniform"`` (every token may replace every other; the uniform prior is MH's
    starting state).

    score_parameterization (`str`, defaults to ``"linear"``): ``"linear"``, c_theta = network output
        (the paper; 1 + c_theta may go negative and MH clamps it), or ``"exp"``, c_theta = e^output - 1 > -1.
    num_neighbour_samples (`int`, defaults to 1): K, the neighbours per sequence drawn for the second
        term of J_CSM (each costs one more forward pass over the batch).
    """

    model_type = "csm"

    graph: Literal["uniform"] = "uniform"  # Hamming-1 neighbours over every token
    time_conditioning: Literal[False] = False  # CSM has no time
    score_parameterization: Literal["linear", "exp"] = "linear"
    num_neighbour_samples: int = positive(default=1)


__all__ = ["CSMConfig"]
