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

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Unpack

import torch
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..backbones.dit import DDiTBlock, init_dit_weights
from ..backbones.transformers_backbone import build_backbone
from ..generation.configuration import DiffusionGenerationConfig
from ..likelihood import LikelihoodMixin
from ..objectives.reduction import reduce_loss
from ..processes import NoiseLevel, TimeSampler, get_graph, get_schedule
from .adaptation import AttentionAnnealingMixin
from .configuration_utils import DiffusionConfig
from .embeddings import VocabularyResizingMixin
from .input_checks import InputChecksMixin
from .loading import StrictLoadingMixin
from .saving import SelfContainedSavingMixin


@dataclass
class DiffusionLMOutput(ModelOutput):
    """``logits`` is the method's native output: SEDD's log concrete score, MDLM's SUBS log-probs.
    With ``output_hidden_states`` / ``output_attentions``: the embeddings and each block's output
    (num_hidden_layers + 1 tensors [B, L', D]) / each block's attention weights [B, H, L', L'_k]
    (``attn_implementation="eager"`` only), where L' is the length the backbone ran on (2L for
    BD3-LM's training pass over [x_t ; x0])."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    loss_per_token: torch.FloatTensor | None = None
    timesteps: torch.FloatTensor | None = None
    noisy_input_ids: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


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


class DiffusionPreTrainedModel(
    AttentionAnnealingMixin,
    InputChecksMixin,
    LikelihoodMixin,
    StrictLoadingMixin,
    SelfContainedSavingMixin,
    VocabularyResizingMixin,
    PreTrainedModel,
):
    config_class = DiffusionConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DDiTBlock"]
    # attention through transformers' ALL_ATTENTION_FUNCTIONS (config._attn_implementation):
    # "sdpa" (default), "eager" (returns the weights), or a registered function
    _supports_sdpa = True
    _supports_attention_backend = True
    # forward(output_hidden_states=True / output_attentions=True): hooks on the blocks collect
    # their outputs (a block returns (hidden, attention weights))
    _can_record_outputs = {
        "hidden_states": OutputRecorder(DDiTBlock, index=0),
        "attentions": OutputRecorder(DDiTBlock, index=1),
    }
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
        self.backbone = build_backbone(config)  # the DiT, or a transformers model (config.backbone_config)
        self.graph = get_graph(config.graph, config.vocab_size, config.mask_token_id)
        self.schedule = get_schedule(config.noise_schedule, **config.schedule_kwargs())
        self._register_annealing(config)  # config.attention_anneal_steps: its step counter
        # Trainer passes num_items_in_batch only to models that normalise by it; a per-sequence sum
        # cannot be, so the Trainer then averages over accumulation steps itself.
        self.accepts_loss_kwargs = config.loss_reduction == "token_mean"
        if self.can_generate():
            self.generation_config = self._default_generation_config()

    @torch.no_grad()
    def _init_weights(self, module):
        """Every parameter and buffer gets its init here (the DiT's: ``init_dit_weights``), so a
        model built on the meta device (``from_pretrained``: a key missing under ``strict=False``, or
        ``state_dict={}``) holds the same init as a fresh one. A method with parameters or buffers
        of its own extends this."""
        init_dit_weights(module)
        if module is self and hasattr(self, "attention_anneal_step"):
            init.zeros_(self.attention_anneal_step)

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
        return NoisyInputs(
            timesteps=t, x_t=torch.where(loss_mask, x_t, x0), x0=x0, loss_mask=loss_mask, extras={"x_t_drawn": True}
        )

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

    def run_backbone(
        self, noisy: NoisyInputs, level: NoiseLevel | None, attention_mask, position_ids, inputs_embeds=None, **kwargs
    ):
        inputs_embeds = self.embeds_kwargs(self.given_x_t_embeds(inputs_embeds, noisy))
        attention_mask = self.annealed_mask(attention_mask, noisy.backbone_input)  # training only
        return self.backbone(
            noisy.backbone_input, self.backbone_conditioning(level), attention_mask, position_ids, **inputs_embeds
        )

    def given_x_t_embeds(self, inputs_embeds, noisy: NoisyInputs):
        """``inputs_embeds`` with ``labels`` embeds the given x_t (``input_ids`` with ``timesteps``);
        an x_t the model draws itself (or extra rows it scores, CSM's neighbours) has no given embeddings."""
        if inputs_embeds is None:
            return None
        if noisy.extras.get("x_t_drawn") or noisy.network_input is not None:
            raise ValueError(
                "inputs_embeds with labels needs timesteps and input_ids (the noisy state x_t that inputs_embeds "
                "embeds): here the model draws x_t itself, which has no given embeddings"
            )
        return self.embeds_of(inputs_embeds, noisy.x_t)

    def embeds_of(self, inputs_embeds, input_ids):
        """``inputs_embeds`` [B, L, hidden_size] used in place of the embedding of ``input_ids``
        (which the output parameterization still reads: SUBS copies unmasked tokens, the score is
        relative to x_t). None passes."""
        if inputs_embeds is None:
            return None
        expected = (*input_ids.shape, self.config.hidden_size)
        if not torch.is_tensor(inputs_embeds) or tuple(inputs_embeds.shape) != expected:
            shape = tuple(inputs_embeds.shape) if torch.is_tensor(inputs_embeds) else type(inputs_embeds).__name__
            raise ValueError(
                f"inputs_embeds must be a tensor of shape {expected} (input_ids + hidden_size), got {shape}"
            )
        return inputs_embeds

    @staticmethod
    def embeds_kwargs(inputs_embeds) -> dict:
        """The backbone's ``inputs_embeds`` argument, passed only when given (a custom backbone,
        such as the test oracle, need not take it)."""
        return {} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}

    def denoise(self, input_ids, timesteps, attention_mask=None, position_ids=None, inputs_embeds=None, **kwargs):
        """Sampling mode (no labels): the native output at ``input_ids`` = x_t and time ``timesteps``
        (``inputs_embeds``, if given, replaces the embedding of x_t). Returns ``(logits, t)``."""
        if timesteps is None:
            raise ValueError("timesteps is required when labels are not given (input_ids is then x_t)")
        t = self._check_timesteps(timesteps, input_ids.shape[0], input_ids.device)
        level = self.noise_level(t)
        embeds = self.embeds_kwargs(self.embeds_of(inputs_embeds, input_ids))
        hidden = self.backbone(input_ids, self.backbone_conditioning(level), attention_mask, position_ids, **embeds)
        return self.parameterize(hidden, input_ids, level), t

    def loss_positions(self, labels, attention_mask) -> torch.BoolTensor:
        """Where the loss is read: labelled (!= -100) and not padding."""
        loss_mask = labels != -100
        if attention_mask is not None and attention_mask.dim() == 2:
            loss_mask = loss_mask & attention_mask.bool()
        return loss_mask

    # --- the shared forward -------------------------------------------------------------------
    @capture_outputs
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
        **kwargs: Unpack[TransformersKwargs],
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
