"""The forward processes: graphs (what a token can become), noise schedules (how fast), the
discrete-time grid of D3PM, and the training-time samplers of t."""

from .discrete_time import (
    DiscreteNoiseLevel,
    DiscreteTimeSampler,
    DiscreteTimeSchedule,
    StepCoefficients,
    d3pm_reverse_log_probs,
    log_stationary,
    log_transition_to,
    marginal_log_probs,
    mixture_log_weights,
    posterior_log_probs,
    prior_kl,
    reverse_log_probs,
)
from .graphs import GRAPH_ALIASES, GRAPHS, AbsorbingGraph, Graph, UniformGraph, get_graph, uniform_ratio_offset
from .schedules import (
    SCHEDULES,
    CosineSchedule,
    GeometricSchedule,
    LogLinearSchedule,
    NoiseLevel,
    NoiseSchedule,
    expm1_sigma,
    get_schedule,
)
from .time_sampling import TimeSampler

__all__ = [
    "AbsorbingGraph",
    "CosineSchedule",
    "DiscreteNoiseLevel",
    "DiscreteTimeSampler",
    "DiscreteTimeSchedule",
    "GRAPHS",
    "GRAPH_ALIASES",
    "GeometricSchedule",
    "Graph",
    "LogLinearSchedule",
    "NoiseLevel",
    "NoiseSchedule",
    "SCHEDULES",
    "StepCoefficients",
    "TimeSampler",
    "UniformGraph",
    "d3pm_reverse_log_probs",
    "expm1_sigma",
    "get_graph",
    "get_schedule",
    "log_stationary",
    "log_transition_to",
    "marginal_log_probs",
    "mixture_log_weights",
    "posterior_log_probs",
    "prior_kl",
    "reverse_log_probs",
    "uniform_ratio_offset",
]
