"""Concrete Score Matching as a Hugging Face model: DDiT backbone -> the D x S concrete score
c_theta(x)_{d,v} ~ p(x with d -> v) / p(x) - 1, trained with the tractable J_CSM and sampled by
Metropolis-Hastings. There is no forward process and no likelihood bound."""

from __future__ import annotations

import torch

from ...generation.configuration import DiffusionGenerationConfig
from ...generation.mixin import DiffusionGenerationMixin
from ...objectives.concrete_score import concrete_score_implicit_loss, sample_neighbours
from ..modeling_utils import DiffusionLMOutput, DiffusionPreTrainedModel, reduce_loss
from .configuration_csm import CSMConfig


class CSMPreTrainedModel(DiffusionPreTrainedModel):
    config_class = CSMConfig


class CSMForDiffusionLM(CSMPreTrainedModel, DiffusionGenerationMixin):
    """``logits`` are the concrete score table c_theta(x) [B, L, V] (0 at v = x^d); ``loss`` is the
    unbiased J_CSM estimate (``objectives.concrete_score``), which costs 1 + K forward passes."""

    default_sampler = "metropolis_hastings"
    model_output_kind = "concrete_score"
    has_likelihood_bound = False

    def __init__(self, config: CSMConfig):
        super().__init__(config)
        self.post_init()

    def _default_generation_config(self) -> DiffusionGenerationConfig:
        return DiffusionGenerationConfig(sampler=self.default_sampler, noise_removal=False)

    def parameterize(self, logits, x, level=None):
        c = torch.expm1(logits) if self.config.score_parameterization == "exp" else logits
        return c.scatter(-1, x.unsqueeze(-1), 0.0)

    def concrete_score(self, input_ids, attention_mask=None, position_ids=None) -> torch.Tensor:
        """c_theta(x) [B, L, V] in one forward pass."""
        zeros = torch.zeros(input_ids.shape[0], device=input_ids.device)
        return self.parameterize(self.backbone(input_ids, zeros, attention_mask, position_ids), input_ids)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        timesteps=None,
        labels=None,
        position_ids=None,
        return_dict=None,
        generator=None,
        num_items_in_batch=None,
        **kwargs,
    ) -> DiffusionLMOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch, length)`): the sequence x (clean data: CSM has no noise).
        timesteps: ignored (accepted so that the shared generation loop can call every model alike).
        labels (`torch.LongTensor`, *optional*): the data y; -100 marks positions that are neither
            scored nor perturbed. With labels, the loss draws ``num_neighbour_samples`` neighbours.
        """
        if input_ids is None and labels is None:
            raise ValueError("forward needs input_ids or labels")
        if input_ids is not None:
            self._check_ids(input_ids, "input_ids")
        if labels is not None:
            self._check_ids(labels, "labels")
            if input_ids is not None and labels.shape != input_ids.shape:
                raise ValueError(
                    f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}"
                )
        ref = input_ids if input_ids is not None else labels
        self._check_attention_mask(attention_mask, ref.shape)
        loss = per_token = None
        if labels is None:
            c = self.concrete_score(input_ids, attention_mask, position_ids)
        else:
            loss_mask = labels != -100
            if attention_mask is not None and attention_mask.dim() == 2:
                loss_mask = loss_mask & attention_mask.bool()
            y = torch.where(loss_mask, labels, input_ids if input_ids is not None else torch.zeros_like(labels))
            k = self.config.num_neighbour_samples
            neighbours, positions, counts = sample_neighbours(y, loss_mask, self.config.vocab_size, k, generator)
            both = torch.cat([y, neighbours])
            mask2 = None if attention_mask is None else attention_mask.repeat(k + 1, *[1] * (attention_mask.dim() - 1))
            pos2 = None if position_ids is None or position_ids.dim() == 1 else position_ids.repeat(k + 1, 1)
            c_all = self.concrete_score(both, mask2, pos2 if pos2 is not None else position_ids)
            c, c_nb = c_all[: y.shape[0]], c_all[y.shape[0] :]
            per_token = concrete_score_implicit_loss(c, y, c_nb, positions, counts, loss_mask, k)
            loss = reduce_loss(per_token, loss_mask, self.config.loss_reduction, num_items_in_batch)
        out = DiffusionLMOutput(loss=loss, logits=c, loss_per_token=per_token)
        return out.to_tuple() if return_dict is False else out

    def negative_elbo(self, *args, **kwargs):
        raise ValueError(
            "CSM defines no likelihood bound: the concrete score gives p(x) only up to normalisation "
            "(has_likelihood_bound = False). Use a diffusion model (SEDD, MDLM, D3PM, CTMC) for bits/perplexity."
        )


__all__ = ["CSMForDiffusionLM", "CSMPreTrainedModel"]
