"""A diffusion LM adapted from a pretrained causal LM (DiffuGPT / DiffuLLaMA, Gong et al. 2024).

Adaptation keeps the causal LM's weights -- its base model becomes the backbone, its next-token head
the output head -- adds a mask token, and runs the attention bidirectionally. Two choices of the
paper make the start of fine-tuning close to what the causal LM already computes:

* shifted prediction (``config.shifted_prediction``): position i is predicted from the hidden state
  at i - 1, so the head keeps predicting "the next token" as it was trained to;
* attention-mask annealing (``config.attention_anneal_steps = N``): for the first N training
  forwards the attention is the causal mask OR a random mask whose density grows linearly from 0
  to 1 (at forward s each non-causal pair (i, j > i) is allowed with probability s / N, one draw
  shared by the batch), so the model moves from the causal attention it knows to full attention
  gradually. The counter ``attention_anneal_step`` is a buffer of the model: it is saved with the
  weights, so a resumed Trainer run continues the schedule. It counts training forwards (with
  gradient accumulation: micro-batches). Evaluation and sampling always use full attention.
"""

from __future__ import annotations

import copy

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_MAPPING


def annealed_attention_mask(length: int, ratio: float, device, generator=None) -> torch.Tensor:
    """Boolean [1, 1, L, L]: the causal mask OR Bernoulli(``ratio``) entries (DiffuLLaMA's annealing)."""
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    extra = torch.rand(length, length, device=device, generator=generator) < ratio
    return (causal | extra)[None, None]


class AttentionAnnealingMixin:
    """The annealed training mask of a model whose config sets ``attention_anneal_steps``."""

    def _register_annealing(self, config):
        if getattr(config, "attention_anneal_steps", 0):
            self.register_buffer("attention_anneal_step", torch.zeros((), dtype=torch.long))

    def annealing_ratio(self) -> float | None:
        """The density of the non-causal part of this training forward's mask, or None once the
        schedule is over (or outside training): s / N at forward s < N."""
        steps = getattr(self.config, "attention_anneal_steps", 0)
        if not steps or not self.training:
            return None
        step = int(self.attention_anneal_step)
        return step / steps if step < steps else None

    def annealed_mask(self, attention_mask, input_ids):
        """The mask of a training forward: the annealed pattern (AND the padding of a [B, L]
        ``attention_mask``) while the schedule runs, which advances it by one; else unchanged."""
        ratio = self.annealing_ratio()
        if ratio is None:
            return attention_mask
        self.attention_anneal_step += 1
        mask = annealed_attention_mask(input_ids.shape[1], ratio, input_ids.device)
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, None, :]
        return mask


class CausalLMAdaptationMixin:
    """``from_causal_lm``: a diffusion LM whose backbone weights are a pretrained causal LM's."""

    # the shifted prediction of DiffuGPT/DiffuLLaMA by default where the method supports it
    adapt_with_shifted_prediction = True

    @classmethod
    def from_causal_lm(
        cls,
        causal_lm,
        tokenizer=None,
        mask_token: str | None = None,
        shifted_prediction: bool | None = None,
        attention_anneal_steps: int = 0,
        **config_kwargs,
    ):
        """Build this diffusion model from a causal LM (a path / Hub name, or a loaded ``*ForCausalLM``):
        the base model becomes ``backbone.model`` and its head ``backbone.lm_head`` (weights copied).

        The absorbing mask is the last id. With a ``tokenizer``, the mask is ``mask_token`` or, if
        None, the tokenizer's own mask token; a token not yet in the tokenizer is added to it (in
        place), and the embeddings are resized to ``len(tokenizer)`` (the new row: the mean of the
        others, transformers' ``mean_resizing``). Without a tokenizer a new row is appended and its
        id is ``model.config.mask_token_id``. ``shifted_prediction`` defaults to
        ``adapt_with_shifted_prediction``; ``attention_anneal_steps`` > 0 turns on the annealing of
        the module docstring. ``config_kwargs`` go to the diffusion config (e.g.
        ``max_position_embeddings``). The causal LM passed in is resized in place. Returns the model in
        eval mode, as ``from_pretrained`` does."""
        if isinstance(causal_lm, PreTrainedModel):
            source = causal_lm
        else:
            source = AutoModelForCausalLM.from_pretrained(causal_lm)
        head = source.get_output_embeddings()
        base = getattr(source, source.base_model_prefix, None) if source.base_model_prefix else None
        if head is None or base is None or not isinstance(base, PreTrainedModel):
            raise ValueError(
                f"causal_lm must be a causal LM with a base model and a next-token head (get_output_embeddings()); "
                f"{type(source).__name__} has {'no head' if head is None else 'no base model'}"
            )
        if MODEL_MAPPING.get(type(source.config), None) is not type(base):
            raise ValueError(
                f"the base model of causal_lm ({type(base).__name__}) is not what AutoModel builds from its config; "
                "it cannot be rebuilt as a backbone"
            )
        if getattr(head, "bias", None) is not None:
            raise ValueError("causal_lm's head has a bias, which the backbone's lm_head (bias=False) cannot hold")
        vocab_size = _vocab_with_mask(tokenizer, mask_token, source.get_input_embeddings().weight.shape[0])
        if vocab_size != source.get_input_embeddings().weight.shape[0]:
            source.resize_token_embeddings(vocab_size)
        if shifted_prediction is None:
            shifted_prediction = cls.adapt_with_shifted_prediction
        config = cls.config_class(
            backbone_config=copy.deepcopy(source.config),
            shifted_prediction=shifted_prediction,
            attention_anneal_steps=attention_anneal_steps,
            **config_kwargs,
        )
        model = cls(config)
        with torch.no_grad():
            model.backbone.model.load_state_dict(base.state_dict())
            model.backbone.lm_head.weight.copy_(source.get_output_embeddings().weight)
        return model.to(source.dtype).eval()  # as from_pretrained returns it


def _vocab_with_mask(tokenizer, mask_token, rows: int) -> int:
    """The vocabulary size once the mask token is the last id (see ``from_causal_lm``)."""
    if tokenizer is None:
        if mask_token is not None:
            raise ValueError("mask_token (a string) needs the tokenizer it is added to; pass tokenizer=")
        return rows + 1
    mask_token = mask_token if mask_token is not None else tokenizer.mask_token
    if mask_token is None:
        raise ValueError(
            f"{type(tokenizer).__name__} has no mask token: pass mask_token (e.g. '<|mdm_mask|>'), which is added to it"
        )
    if mask_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"mask_token": mask_token})
    else:
        tokenizer.mask_token = mask_token
    mask_id, size = tokenizer.convert_tokens_to_ids(mask_token), len(tokenizer)
    if mask_id != size - 1:
        raise ValueError(
            f"mask_token {mask_token!r} has id {mask_id}, but the absorbing mask must be the last id ({size - 1}): "
            "pass a mask_token the tokenizer does not have yet (it is appended)"
        )
    return size


__all__ = ["AttentionAnnealingMixin", "CausalLMAdaptationMixin", "annealed_attention_mask"]
