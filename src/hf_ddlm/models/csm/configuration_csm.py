"""Concrete Score Matching configuration (Meng, Choi, Song & Ermon, "Concrete Score Matching:
Generalized Score Matching for Discrete Data", NeurIPS 2022)."""

from __future__ import annotations

from ..configuration_utils import DiffusionConfig

SCORE_PARAMETERIZATIONS = ("linear", "exp")


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

    graph: str = "uniform"
    time_conditioning: bool = False
    score_parameterization: str = "linear"
    num_neighbour_samples: int = 1

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.graph != "uniform":
            raise ValueError(f"CSM needs graph='uniform' (Hamming-1 neighbours over every token), got {self.graph!r}")
        if self.time_conditioning:
            raise ValueError("CSM has no time: time_conditioning must be False")
        if self.score_parameterization not in SCORE_PARAMETERIZATIONS:
            raise ValueError(
                f"score_parameterization must be one of {SCORE_PARAMETERIZATIONS}, got {self.score_parameterization!r}"
            )
        if (
            isinstance(self.num_neighbour_samples, bool)
            or not isinstance(self.num_neighbour_samples, int)
            or self.num_neighbour_samples < 1
        ):
            raise ValueError(f"num_neighbour_samples must be an integer >= 1, got {self.num_neighbour_samples!r}")
