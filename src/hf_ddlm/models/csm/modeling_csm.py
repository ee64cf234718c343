"""Concrete Score Matching as a Hugging Face model: DDiT backbone -> the D x S concrete score
c_theta(x)_{d,v} ~ p(x with d -> v) / p(x) - 1, trained with the tractable J_CSM and sampled by
Metropolis-Hastings. There is no forward process and no likelihood bound."""

from __future__ import annotations

import torch

from ...generation.configuration import DiffusionGenerationConfig
from ...generation.mixin import DiffusionGenerationMixin
from ...objectives.concrete_score import concrete_score_implicit_loss, sample_neighbours
from ..modeling_utils import DiffusionPreTrainedModel, NoisyInputs
from .configuration_csm import CSMConfig


class CSMPreTrainedModel(DiffusionPreTrainedModel):
    config_class = CSMConfig


class CSMForDiffusionLM(CSMPreTrainedModel, DiffusionGenerationMixin):
    """``logits`` are the concrete score table c_theta(x) [B, L, V] (0 at v = x^d); ``loss`` is the
    unbiased J_CSM estimate (``objectives.concrete_score``), which costs 1 + K forward passes."""

    default_sampler = "metropolis_hastings"
    model_output_kind = "concrete_score"
    has_likelihood_bound = False
    uses_time = False  # timesteps are ignored; a labelled batch always draws its neighbours

    def __init__(self, config: CSMConfig):
        super().__init__(config)
        self.post_init()

    def _default_generation_config(self) -> DiffusionGenerationConfig:
        return DiffusionGenerationConfig(sampler=self.default_sampler, noise_removal=False)

    def parameterize(self, logits, x, level=None):
        c = torch.expm1(logits) if self.config.score_parameterization == "exp" else logits
        return c.scatter(-1, x.unsqueeze(-1), 0.0)

    def concrete_score(self, input_ids, attention_mask=None, position_ids=None, inputs_embeds=None) -> torch.Tensor:
        """c_theta(x) [B, L, V] in one forward pass (``inputs_embeds``: the embedding of x, if given)."""
        zeros = torch.zeros(input_ids.shape[0], device=input_ids.device)
        embeds = self.embeds_kwargs(self.embeds_of(inputs_embeds, input_ids))
        hidden = self.backbone(input_ids, zeros, attention_mask, position_ids, **embeds)
        return self.parameterize(hidden, input_ids)

    # --- forward hooks: no time, no noise; the loss scores the data and K Hamming-1 neighbours ---
    def denoise(self, input_ids, timesteps=None, attention_mask=None, position_ids=None, **kwargs):
        """c_theta(x) at ``input_ids``; ``timesteps`` is ignored (accepted so that the shared
        generation loop can call every model alike)."""
        return self.concrete_score(input_ids, attention_mask, position_ids, kwargs.get("inputs_embeds")), None

    def prepare_noisy_inputs(self, x0, loss_mask, generator=None):
        """The data y and ``num_neighbour_samples`` neighbours, each one token changed at a loss
        position; the network scores them all in one batch of (1 + K) B rows."""
        k = self.config.num_neighbour_samples
        neighbours, positions, counts = sample_neighbours(x0, loss_mask, self.config.vocab_size, k, generator)
        return NoisyInputs(
            timesteps=None,
            x_t=x0,
            x0=x0,
            loss_mask=loss_mask,
            network_input=torch.cat([x0, neighbours]),
            extras={"positions": positions, "counts": counts},
        )

    def run_backbone(self, noisy, level, attention_mask, position_ids, **kwargs):
        self.given_x_t_embeds(kwargs.get("inputs_embeds"), noisy)  # refused: the neighbours have no embeddings
        rows = noisy.network_input.shape[0] // noisy.x_t.shape[0]
        if attention_mask is not None:
            attention_mask = attention_mask.repeat(rows, *[1] * (attention_mask.dim() - 1))
        if position_ids is not None and position_ids.dim() > 1:  # [B or 1, L] -> one row per network row
            position_ids = position_ids.expand(noisy.x_t.shape[0], -1).repeat(rows, 1)
        zeros = torch.zeros(noisy.network_input.shape[0], device=noisy.network_input.device)
        return self.backbone(noisy.network_input, zeros, attention_mask, position_ids)

    def loss_per_token(self, output, x0, x_t, level, noisy):
        """J_CSM per token (``objectives.concrete_score``): the data rows and the neighbours' rows."""
        b = x0.shape[0]
        c, c_neighbours = output[:b], output[b:]
        return concrete_score_implicit_loss(
            c,
            x0,
            c_neighbours,
            noisy.extras["positions"],
            noisy.extras["counts"],
            noisy.loss_mask,
            self.config.num_neighbour_samples,
        )

    def negative_elbo(self, *args, **kwargs):
        raise ValueError(
            "CSM defines no likelihood bound: the concrete score gives p(x) only up to normalisation "
            "(has_likelihood_bound = False). Use a diffusion model (SEDD, MDLM, D3PM, CTMC) for bits/perplexity."
        )


__all__ = ["CSMForDiffusionLM", "CSMPreTrainedModel"]
