from .graphs import AbsorbingGraph, Graph, UniformGraph, get_graph
from .schedules import GeometricSchedule, LogLinearSchedule, NoiseLevel, NoiseSchedule, expm1_sigma, get_schedule
from .time_sampling import TimeSampler

__all__ = [
    "AbsorbingGraph",
    "GeometricSchedule",
    "Graph",
    "LogLinearSchedule",
    "NoiseLevel",
    "NoiseSchedule",
    "TimeSampler",
    "UniformGraph",
    "expm1_sigma",
    "get_graph",
    "get_schedule",
]
