"""SEDD as a Hugging Face model: DDiT backbone + log-score parameterization + score entropy.

SEDD learns the concrete score s_theta(x_t, t)_y ~ p_t(y) / p_t(x_t) for every one-token change y
of x_t, trained with the denoising score entropy (SEDD eq. 10). The forward process is a graph
(absorbing or uniform) under a noise schedule (log-linear or geometric); the model is conditioned
on the total noise sigma(t), not on t.
"""

from __future__ import annotations

from ...generation.mixin import DiffusionGenerationMixin
from ...objectives import denoising_score_entropy
from ...parameterizations import sedd_log_score
from ..modeling_utils import DiffusionPreTrainedModel
from .configuration_sedd import SEDDConfig


class SEDDPreTrainedModel(DiffusionPreTrainedModel):
    config_class = SEDDConfig


class SEDDForDiffusionLM(SEDDPreTrainedModel, DiffusionGenerationMixin):
    """``logits`` is the log concrete score [B, L, V]; ``loss`` the score-entropy NELBO.

    The loss reduction defaults to the official one (sum over positions, mean over the batch,
    ``loss_reduction="sequence_sum"``); set ``loss_reduction="token_mean"`` for a per-token mean.
    """

    default_sampler = "analytic"
    model_output_kind = "log_score"

    def __init__(self, config: SEDDConfig):
        super().__init__(config)
        self.post_init()

    def parameterize(self, logits, x_t, level):
        return sedd_log_score(logits, x_t, level.sigma, self.config.scale_by_sigma)

    def loss_per_token(self, output, x0, x_t, level, noisy):
        return denoising_score_entropy(output, x0, x_t, level, self.graph)


__all__ = ["SEDDForDiffusionLM", "SEDDPreTrainedModel"]
