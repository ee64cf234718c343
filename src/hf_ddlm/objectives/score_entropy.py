from __future__ import annotations

import torch

from ..processes.graphs import Graph
from ..processes.schedules import NoiseLevel


def denoising_score_entropy(log_score: torch.Tensor, x0, x_t, level: NoiseLevel, graph: Graph) -> torch.Tensor:
    """SEDD's denoising score entropy loss per token (SEDD eq. 10, official ``losses.py``):
    dsigma(t) * sum_{y != x_t} Q(x_t, y) [s_y - r_y log s_y + K(r_y)], r_y = p(y|x0)/p(x_t|x0).

    Its integral over t in [0, 1] plus the prior term is the NELBO; the constant K(a) = a(log a - 1)
    keeps it non-negative and zero at the true score. Computed in float32 at least: the three terms
    are large and cancel at small t.
    """
    dtype = torch.promote_types(log_score.dtype, torch.float32)
    entropy = graph.score_entropy(log_score.to(dtype), level.sigma[:, None].to(dtype), x_t, x0)
    return level.dsigma[:, None].to(dtype) * entropy


__all__ = ["denoising_score_entropy"]
