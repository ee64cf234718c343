"""What every hf_ddlm model shares: weight init, input checks, and the forward skeleton.

``forward`` follows one data flow for every method (architecture.md, section 3.3):

1. with ``labels`` (x0), the method's ``prepare_noisy_inputs`` draws t and x_t (positions whose
   label is -100 keep their ``input_ids`` token clean: padding, or a prompt); with ``timesteps``,
   ``input_ids`` is the noisy state x_t and the loss is deterministic (``noisy_inputs_from``);
2. level = schedule(t); ``run_backbone`` feeds the network (sigma, or zeros when the model is not
   time-conditioned);
3. ``parameterize`` turns backbone logits into the method's native output (``logits``);
4. ``loss_per_token`` gives the method's per-token objective, reduced by ``config.loss_reduction``.

Without ``labels`` the model is a denoiser at a given time (``denoise``), as the samplers call it.
A method is a subclass that sets the graph, schedule and time sampler and implements
``parameterize`` and ``loss_per_token``; it overrides the other hooks only where it differs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ..backbones.dit import DiT, EmbeddingLayer, Rotary
from ..generation.configuration import DiffusionGenerationConfig
from ..likelihood import LikelihoodMixin
from ..objectives.reduction import reduce_loss
from ..processes import NoiseLevel, TimeSampler, get_graph, get_schedule
from .configuration_utils import DiffusionConfig
from .loading import StrictLoadingMixin
from .saving import SelfContainedSavingMixin


@dataclass
class DiffusionLMOutput(ModelOutput):
    """``logits`` is the method's native output: SEDD's log concrete score, MDLM's SUBS log-probs."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    loss_per_token: torch.FloatTensor | None = None
    timesteps: torch.FloatTensor | None = None
    noisy_input_ids: torch.LongTensor | None = None


@dataclass
class NoisyInputs:
    """One training draw (or a given x_t): what the network sees and where the loss is read.

    ``timesteps`` is [B], or [B, L] when t varies along the sequence (BD3-LM's blocks), or None
    for a method without time (CSM). ``x_t`` is the state the output and loss refer to and ``x0``
    the clean tokens; ``network_input`` what the backbone is fed when that is more rows than x_t
    (CSM's neighbours). ``extras`` carries what a method's loss needs besides.
    """

    timesteps: torch.Tensor | None
    x_t: torch.LongTensor
    x0: torch.LongTensor
    loss_mask: torch.BoolTensor
    network_input: torch.LongTensor | None = None
    extras: dict = field(default_factory=dict)

    @property
    def backbone_input(self) -> torch.LongTensor:
        return self.x_t if self.network_input is None else self.network_input


class DiffusionPreTrainedModel(LikelihoodMixin, StrictLoadingMixin, SelfContainedSavingMixin, PreTrainedModel):
    config_class = DiffusionConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DDiTBlock"]
    _supports_sdpa = True
    is_causal = False
    # PreTrainedModel's own attribute would shadow the mixin's, which comes later in the MRO
    generation_config_class = DiffusionGenerationConfig
    # a cap on the sigma a time-conditioned backbone sees (None: none), so t = 1 embeds finitely
    max_conditioning_sigma: float | None = None
    # the sigma beyond which the data is fully noised for every purpose (alpha = e^-50 < 2e-22):
    # forward computes at most this, so that t = 1 stays finite where sigma(1) is infinite
    max_sigma: float = 50.0
    # False for a method without a forward process (CSM): timesteps are then ignored
    uses_time = True
    # why a loss at a given t = 0 is rejected (the error message's reason)
    zero_time_loss_reason = "the loss's weight is infinite at t = 0 (1/t, or 1/(e^sigma - 1))"
    # an eval-mode loss without a generator draws t, x_t (CSM: the neighbours) from a generator seeded
    # with this, so that evaluations repeat exactly and leave the global RNG alone (None: global RNG)
    eval_seed: int | None = 0

    def __init__(self, config: DiffusionConfig):
        super().__init__(config)
        self.backbone = DiT(config)
        self.graph = get_graph(config.graph, config.vocab_size)
        self.schedule = get_schedule(config.noise_schedule, **config.schedule_kwargs())
        # Trainer passes num_items_in_batch only to models that normalise by it; a per-sequence sum
        # cannot be, so the Trainer then averages over accumulation steps itself.
        self.accepts_loss_kwargs = config.loss_reduction == "token_mean"
        if self.can_generate():
            self.generation_config = self._default_generation_config()

    @torch.no_grad()
    def _init_weights(self, module):
        # Official DiT init: zero adaLN and output head (the model starts at a uniform p0);
        # every other Linear keeps PyTorch's default init from its construction. Buffers are
        # refilled here because from_pretrained builds the model on the meta device.
        if isinstance(module, Rotary):
            init.copy_(module.inv_freq, Rotary.compute_inv_freq(module.head_dim, module.base))
        elif isinstance(module, EmbeddingLayer):
            init.kaiming_uniform_(module.embedding, a=5**0.5)
        elif isinstance(module, torch.nn.Linear) and getattr(module, "zero_init", False):
            # flagged on the Linear itself: transformers skips parameter-less parents such as the blocks
            init.zeros_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif hasattr(module, "weight") and module.__class__.__name__ == "LayerNorm":
            init.ones_(module.weight)

    def get_input_embeddings(self):
        return self.backbone.vocab_embed

    def get_output_embeddings(self):
        return self.backbone.output_layer.linear

    # --- method hooks -------------------------------------------------------------------------
    def parameterize(self, logits: torch.Tensor, x_t: torch.LongTensor, level: NoiseLevel | None) -> torch.Tensor:
        """Backbone logits -> the method's native output (``DiffusionLMOutput.logits``)."""
        raise NotImplementedError

    def loss_per_token(self, output, x0, x_t, level: NoiseLevel | None, noisy: NoisyInputs) -> torch.Tensor:
        """The method's objective per token [B, L] (unreduced; positions outside the loss are set
        to zero afterwards, whatever they hold, and x0 there is replaced by x_t so it is a valid id)."""
        raise NotImplementedError

    def backbone_conditioning(self, level: NoiseLevel) -> torch.Tensor:
        """What the backbone's adaLN embeds: sigma(t) (capped at ``max_conditioning_sigma``), or
        zeros for a model that is not time-conditioned (MDLM: its output then depends on x_t only)."""
        if not self.config.time_conditioning:
            return torch.zeros_like(level.sigma)
        if self.max_conditioning_sigma is not None:
            return level.sigma.clamp_max(self.max_conditioning_sigma)
        return level.sigma

    def noise_level(self, t: torch.Tensor) -> NoiseLevel:
        """schedule(t) with sigma capped at ``max_sigma`` (and dsigma at e^max_sigma, its value there
        under the eps = 0 log-linear schedule, whose sigma(1) = dsigma(1) = inf): the losses' limits
        at t = 1 are finite (e.g. dsigma / (e^sigma - 1) -> 1) but inf / inf is not. Below the cap
        (every t < 1 in float32) the values are the schedule's own, bitwise."""
        level = self.schedule(t)
        return dataclasses.replace(
            level, sigma=level.sigma.clamp_max(self.max_sigma), dsigma=level.dsigma.clamp_max(math.exp(self.max_sigma))
        )

    @property
    def time_sampler(self) -> TimeSampler:
        """Draws the training t; built from the config, so a changed range takes effect."""
        return TimeSampler(self.config.sampling_eps, self.config.antithetic_sampling)

    def draw_timesteps(self, x0, generator=None) -> torch.Tensor:
        """The training t: [B] (or [B, L] for a method with t per position)."""
        return self.time_sampler(x0.shape[0], device=x0.device, generator=generator)

    def prepare_noisy_inputs(self, x0, loss_mask, generator=None) -> NoisyInputs:
        """A training draw: t from the time sampler, x_t ~ q_t(. | x0); positions outside the loss
        are conditioning and stay clean."""
        t = self.draw_timesteps(x0, generator)
        x_t = self.graph.sample_xt(x0, self.schedule(t).sigma, generator=generator)
        return NoisyInputs(timesteps=t, x_t=torch.where(loss_mask, x_t, x0), x0=x0, loss_mask=loss_mask)

    def noisy_inputs_from(self, input_ids, timesteps, x0, loss_mask) -> NoisyInputs:
        """A given noisy state: ``input_ids`` is x_t at ``timesteps`` (in (0, 1]: the loss is an
        integrand over t whose weight diverges at t = 0, ``check_loss_timesteps``)."""
        t = self._check_timesteps(timesteps, input_ids.shape[0], input_ids.device)
        self.check_loss_timesteps(t)
        return NoisyInputs(timesteps=t, x_t=input_ids, x0=x0, loss_mask=loss_mask)

    def check_loss_timesteps(self, t: torch.Tensor) -> None:
        """A loss needs t > 0: t = 0 is clean data, where every method's weight is infinite (MDLM and
        BD3-LM: 1/t; SEDD and CTMC: the ratio 1/(e^sigma - 1); D3PM has no step k = 0). The training
        draw never gives t = 0 (``TimeSampler``); sampling mode accepts t = 0."""
        # a data-dependent check: eager only, as the input checks (torch.compile / export trace past it)
        if not torch.compiler.is_compiling() and (t <= 0).any():
            raise ValueError(
                f"timesteps must lie in (0, 1] when labels are given ({self.zero_time_loss_reason}); "
                "t = 0 is accepted without labels (sampling mode)"
            )

    def default_loss_generator(self, device) -> torch.Generator | None:
        """Where a loss draws t and x_t (CSM: its neighbours) when no generator is given: the global
        RNG in training mode (a resumed Trainer run continues exactly); in eval mode a generator
        seeded with ``eval_seed``, so that an eval loss repeats exactly and leaves the global RNG
        alone (``eval_seed = None``: the global RNG there too)."""
        if self.training or self.eval_seed is None or torch.compiler.is_compiling():
            return None
        return torch.Generator(device=device).manual_seed(self.eval_seed)

    def check_training_inputs(self, labels, attention_mask, position_ids, **kwargs):
        """Checks a method adds for a labelled batch (after the shared ones)."""

    def run_backbone(self, noisy: NoisyInputs, level: NoiseLevel | None, attention_mask, position_ids, **kwargs):
        return self.backbone(noisy.backbone_input, self.backbone_conditioning(level), attention_mask, position_ids)

    def denoise(self, input_ids, timesteps, attention_mask=None, position_ids=None, **kwargs):
        """Sampling mode (no labels): the native output at ``input_ids`` = x_t and time ``timesteps``.
        Returns ``(logits, t)``."""
        if timesteps is None:
            raise ValueError("timesteps is required when labels are not given (input_ids is then x_t)")
        t = self._check_timesteps(timesteps, input_ids.shape[0], input_ids.device)
        level = self.noise_level(t)
        hidden = self.backbone(input_ids, self.backbone_conditioning(level), attention_mask, position_ids)
        return self.parameterize(hidden, input_ids, level), t

    def loss_positions(self, labels, attention_mask) -> torch.BoolTensor:
        """Where the loss is read: labelled (!= -100) and not padding."""
        loss_mask = labels != -100
        if attention_mask is not None and attention_mask.dim() == 2:
            loss_mask = loss_mask & attention_mask.bool()
        return loss_mask

    # --- input checks -------------------------------------------------------------------------
    # Shape and type checks run always; checks that read tensor values (ids in the vocabulary, t in
    # [0, 1]) run in eager mode only: torch.compile(fullgraph=True) and torch.export cannot branch
    # on data, so a traced graph trusts its inputs (_reads_values).
    @staticmethod
    def _reads_values() -> bool:
        return not torch.compiler.is_compiling()

    def _check_ids(self, ids, name, allow_mask=True):
        if not torch.is_tensor(ids):
            raise ValueError(f"{name} must be a torch.Tensor of token ids [batch, length], got {type(ids).__name__}")
        if ids.dim() != 2:
            hint = f" (one sequence: {name}[None])" if ids.dim() == 1 else ""
            raise ValueError(f"{name} must be [batch, length] (2-D), got shape {tuple(ids.shape)}{hint}")
        if ids.shape[0] == 0 or ids.shape[1] == 0:
            raise ValueError(f"{name} is empty (shape {tuple(ids.shape)}): batch size and length must be >= 1")
        if ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
        if not self._reads_values():
            return
        bad = (ids < 0) | (ids >= self.config.vocab_size)
        if name == "labels":
            bad &= ids != -100
        if bad.any():
            raise ValueError(f"{name} has ids outside [0, {self.config.vocab_size}) (labels may also be -100)")
        if not allow_mask and self.graph.mask_token_id is not None:
            if (ids == self.graph.mask_token_id).any():
                raise ValueError(f"{name} must not contain the mask token id {self.graph.mask_token_id}")

    @staticmethod
    def _check_timesteps_type(timesteps):
        """A number, a tensor or a sequence of numbers (not text, not a bool)."""
        if timesteps is None or torch.is_tensor(timesteps):
            return
        ok = isinstance(timesteps, (int, float)) and not isinstance(timesteps, bool)
        if not ok and isinstance(timesteps, (list, tuple)):
            ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in timesteps)
        if not ok and hasattr(timesteps, "__array__"):  # numpy
            ok = getattr(timesteps, "dtype", None) is not None and timesteps.dtype.kind in "iuf"
        if not ok:
            raise ValueError(
                f"timesteps must be a number in [0, 1] or a tensor of shape (batch,), got {type(timesteps).__name__} "
                f"{timesteps!r}"
            )

    def _check_timesteps(self, timesteps, batch_size, device):
        self._check_timesteps_type(timesteps)
        timesteps = torch.as_tensor(timesteps, dtype=torch.float32, device=device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(batch_size)
        if timesteps.shape != (batch_size,):
            raise ValueError(f"timesteps must be a scalar or of shape ({batch_size},), got {tuple(timesteps.shape)}")
        if self._reads_values() and (((timesteps < 0) | (timesteps > 1)).any() or torch.isnan(timesteps).any()):
            raise ValueError("timesteps must lie in [0, 1] (t=0 is clean data, t=1 fully noised)")
        return timesteps

    @staticmethod
    def _check_position_ids(position_ids, shape):
        if position_ids is None:
            return
        batch, length = shape
        if not torch.is_tensor(position_ids) or position_ids.dtype not in (torch.int64, torch.int32):
            kind = position_ids.dtype if torch.is_tensor(position_ids) else type(position_ids).__name__
            raise ValueError(f"position_ids must hold integer positions (a LongTensor), got {kind}")
        ok = position_ids.shape[-1:] == (length,) and (
            position_ids.dim() == 1 or (position_ids.dim() == 2 and position_ids.shape[0] in (1, batch))
        )
        if not ok:
            raise ValueError(
                f"position_ids must be [length] or [batch or 1, length] = [{length}] or [{batch} or 1, {length}] "
                f"(the shape of input_ids {tuple(shape)}), got {tuple(position_ids.shape)}"
            )

    def _check_attention_mask(self, attention_mask, shape):
        if attention_mask is None:
            return
        if attention_mask.dim() == 2 and tuple(attention_mask.shape) != tuple(shape):
            raise ValueError(
                f"attention_mask must have the shape of input_ids {tuple(shape)}, got {tuple(attention_mask.shape)}"
            )
        if attention_mask.dim() not in (2, 4):
            raise ValueError(
                f"attention_mask must be [batch, length] (or a 4-D boolean mask), got {attention_mask.dim()}-D"
            )
        if attention_mask.dim() == 4:
            batch, length = shape
            b, h, q, k = attention_mask.shape
            heads = self.config.num_attention_heads
            if b not in (1, batch) or h not in (1, heads) or (q, k) != (length, length):
                raise ValueError(
                    f"a 4-D attention_mask must be [batch or 1, heads or 1, length, length] = "
                    f"[{batch} or 1, {heads} or 1, {length}, {length}], got {tuple(attention_mask.shape)}"
                )

    def _check_inputs(
        self, input_ids, labels, attention_mask, position_ids=None, timesteps=None, allow_mask_in_labels=False
    ):
        if input_ids is None and labels is None:
            raise ValueError("forward needs input_ids (the noisy state) or labels (the clean tokens)")
        if input_ids is not None:
            self._check_ids(input_ids, "input_ids")
        if labels is not None:
            self._check_ids(labels, "labels", allow_mask=allow_mask_in_labels)
            if input_ids is not None and labels.shape != input_ids.shape:
                raise ValueError(
                    f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}"
                )
        shape = (input_ids if input_ids is not None else labels).shape
        self._check_attention_mask(attention_mask, shape)
        self._check_position_ids(position_ids, shape)
        self._check_timesteps_type(timesteps)  # also where a method ignores them (CSM)

    # --- the shared forward -------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        timesteps: torch.Tensor | float | None = None,
        labels: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        generator: torch.Generator | None = None,
        num_items_in_batch=None,
        **kwargs,
    ) -> DiffusionLMOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch, length)`):
            The noisy state x_t when `timesteps` is given; otherwise (training) the clean tokens,
            which `labels` usually equals.
        timesteps (`torch.Tensor` of shape `(batch,)` or a float in [0, 1], *optional*):
            Diffusion time: t = 0 is clean data, t = 1 fully noised. Without `labels` (sampling mode)
            every t in [0, 1] gives finite outputs. With `labels` it must lie in (0, 1]: the loss is
            an integrand whose weight is infinite at t = 0, so t = 0 raises a `ValueError` (t = 1 is
            finite). If omitted with `labels`, t is drawn by the model's time sampler (never 0) and
            x_t from the forward process: in training mode from `generator` or the global RNG; in
            eval mode from `generator`, or else from a generator seeded with `model.eval_seed`
            (default 0), so that an eval loss is reproducible and leaves the global RNG untouched.
        labels (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            The clean tokens x0; -100 marks positions that carry no loss and stay un-noised. A
            batch without loss positions (all -100, or an all-zero `attention_mask`) gives a loss
            of exactly 0 with zero gradients.
        generator (`torch.Generator`, *optional*):
            The random draws of a loss (t, x_t, CSM's neighbours): the same generator state gives
            the same loss.
        """
        self._check_inputs(input_ids, labels, attention_mask, position_ids, timesteps)
        if labels is None:
            logits, t = self.denoise(input_ids, timesteps, attention_mask, position_ids, **kwargs)
            out = DiffusionLMOutput(logits=logits, timesteps=t, noisy_input_ids=input_ids)
            return out.to_tuple() if return_dict is False else out

        self.check_training_inputs(labels, attention_mask, position_ids, **kwargs)
        loss_mask = self.loss_positions(labels, attention_mask)
        x0 = torch.where(labels != -100, labels, input_ids if input_ids is not None else torch.zeros_like(labels))
        if timesteps is None or not self.uses_time:
            if generator is None:
                generator = self.default_loss_generator(x0.device)
            noisy = self.prepare_noisy_inputs(x0, loss_mask, generator)
        elif input_ids is None:
            raise ValueError("with timesteps, input_ids (the noisy state x_t) is required")
        else:
            noisy = self.noisy_inputs_from(input_ids, timesteps, x0, loss_mask)

        level = None if noisy.timesteps is None else self.noise_level(noisy.timesteps)
        # one expression: the raw backbone logits ([B, L, V]) are freed as soon as they are
        # parameterized, instead of staying alive through the loss (a [B, L, V] more at the peak)
        output = self.parameterize(
            self.run_backbone(noisy, level, attention_mask, position_ids, **kwargs), noisy.backbone_input, level
        )
        x_t = noisy.x_t
        x0_safe = torch.where(noisy.loss_mask, noisy.x0, x_t)
        # where, not a product: a term outside the loss may be NaN or inf (NaN * 0 is NaN)
        per_token = torch.where(noisy.loss_mask, self.loss_per_token(output, x0_safe, x_t, level, noisy), 0.0)
        loss = reduce_loss(per_token, noisy.loss_mask, self.config.loss_reduction, num_items_in_batch)
        logits = output[: x_t.shape[0]]  # the network may have seen extra rows (CSM's neighbours)
        out = DiffusionLMOutput(
            loss=loss, logits=logits, loss_per_token=per_token, timesteps=noisy.timesteps, noisy_input_ids=x_t
        )
        return out.to_tuple() if return_dict is False else out


__all__ = ["DiffusionLMOutput", "DiffusionPreTrainedModel", "NoisyInputs"]
