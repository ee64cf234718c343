"""What every hf_ddlm model shares: weight init, input checks, and the forward skeleton.

``forward`` follows one data flow for every method (architecture.md, section 3.3):

1. ``timesteps`` given: ``input_ids`` is the noisy state x_t and the loss (if ``labels``) is
   deterministic. Otherwise, with ``labels``, t is drawn by the time sampler and x_t by the graph;
   positions whose label is -100 keep their ``input_ids`` token clean (padding, or a prompt).
2. level = schedule(t); the backbone sees sigma (or zeros when the model is not time-conditioned).
3. the method's parameterization turns backbone logits into its native output (``logits``).
4. the method's objective gives a per-token loss, reduced by ``config.loss_reduction``.

A method is a subclass that sets the graph, schedule and time sampler and implements
``parameterize`` and ``loss_per_token``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ..backbones.dit import DiT, EmbeddingLayer, Rotary
from ..generation.configuration import DiffusionGenerationConfig
from ..processes import NoiseLevel, TimeSampler, get_graph, get_schedule
from .configuration_utils import DiffusionConfig


@dataclass
class DiffusionLMOutput(ModelOutput):
    """``logits`` is the method's native output: SEDD's log concrete score, MDLM's SUBS log-probs."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    loss_per_token: torch.FloatTensor | None = None
    timesteps: torch.FloatTensor | None = None
    noisy_input_ids: torch.LongTensor | None = None


def reduce_loss(loss_per_token, loss_mask, reduction, num_items_in_batch=None):
    """``token_mean``: sum / number of loss tokens (or ``num_items_in_batch`` under gradient
    accumulation). ``sequence_sum``: per-sequence sum, then the batch mean (SEDD's official loss)."""
    masked = loss_per_token * loss_mask
    if reduction == "sequence_sum":
        return masked.sum(-1).mean()
    denom = num_items_in_batch if num_items_in_batch is not None else loss_mask.sum()
    if torch.is_tensor(denom):
        denom = denom.to(masked.device)
    return masked.sum() / denom


# keywords of save_pretrained(push_to_hub=True) / push_to_hub that go to the upload
_HUB_KWARGS = ("repo_id", "commit_message", "commit_description", "private", "revision", "create_pr")


class DiffusionPreTrainedModel(PreTrainedModel):
    config_class = DiffusionConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DDiTBlock"]
    _supports_sdpa = True
    is_causal = False
    # PreTrainedModel's own attribute would shadow the mixin's, which comes later in the MRO
    generation_config_class = DiffusionGenerationConfig

    def __init__(self, config: DiffusionConfig):
        super().__init__(config)
        self.backbone = DiT(config)
        self.graph = get_graph(config.graph, config.vocab_size)
        self.schedule = get_schedule(config.noise_schedule, **config.schedule_kwargs())
        self.time_sampler = TimeSampler(config.sampling_eps, config.antithetic_sampling)
        # Trainer passes num_items_in_batch only to models that normalise by it; a per-sequence sum
        # cannot be, so the Trainer then averages over accumulation steps itself.
        self.accepts_loss_kwargs = config.loss_reduction == "token_mean"
        if self.can_generate():
            self.generation_config = self._default_generation_config()

    @torch.no_grad()
    def _init_weights(self, module):
        # Official DiT init: zero adaLN and output head (the model starts at a uniform p0);
        # every other Linear keeps PyTorch's default init from its construction. Buffers are refilled here because from_pretrained
        # builds the model on the meta device.
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

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, strict: bool = True, **kwargs):
        """``PreTrainedModel.from_pretrained``, strict by default: a missing, unexpected or
        mis-shaped weight raises an error that names it (official checkpoints included; pass
        ``strict=False`` to get transformers' warnings instead)."""
        want_info = kwargs.pop("output_loading_info", False)
        if strict:  # report mis-shaped weights ourselves, by name, with the other problems
            kwargs.setdefault("ignore_mismatched_sizes", True)
        model, info = super().from_pretrained(
            pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
        )
        if strict:
            problems = []
            for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
                found = sorted(str(k) for k in info.get(kind, ()) or ())
                if found:
                    problems.append(f"{kind.replace('_', ' ')}: {', '.join(found)}")
            if problems:
                raise ValueError(
                    f"loading {pretrained_model_name_or_path} into {cls.__name__} failed strict loading ("
                    + "; ".join(problems)
                    + ")"
                )
        return (model, info) if want_info else model

    # --- saving: every folder is a self-contained Hub folder -----------------------------------
    def _exporter(self, self_contained):
        """``hf_ddlm.export.hub`` when this save should write the self-contained code, else None.

        Only hf_ddlm's own classes can be flattened. The exported copy of this file (which runs as
        ``transformers_modules.*`` with no hf_ddlm) saves like any remote-code model: transformers
        copies its code files. The exporter is imported by name, not with an import statement, so
        that the flattener does not pull it into the exported files."""
        if self_contained is False:
            return None
        if not type(self).__module__.startswith("hf_ddlm."):
            if self_contained:
                raise ValueError(
                    f"self_contained=True needs an hf_ddlm model class, got {type(self).__module__}.{type(self).__name__}"
                )
            return None
        return importlib.import_module("hf_ddlm.export.hub")

    def save_pretrained(
        self, save_directory, is_main_process: bool = True, *args, self_contained: bool | None = None, **kwargs
    ):
        """``PreTrainedModel.save_pretrained``, then the folder is made self-contained: the generated
        ``configuration_/generation_/modeling_<model_type>.py``, ``auto_map`` in ``config.json``, the
        sampler in ``generation_config.json`` and a model card ``README.md`` (written unless the folder
        holds a README that hf_ddlm did not generate), so that it loads with transformers alone
        (``trust_remote_code=True``). With hf_ddlm installed, loading without ``trust_remote_code``
        still builds the library's classes. ``self_contained=False`` writes the plain transformers
        folder. ``push_to_hub=True`` uploads after the code is written."""
        exporter = self._exporter(self_contained)
        if exporter is None:
            return super().save_pretrained(save_directory, is_main_process, *args, **kwargs)
        # the rank that writes (transformers' rule); under FSDP the others may hold no full weights
        dist = torch.distributed
        writes = is_main_process and not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)
        if writes:  # before anything is written: meta weights hold no values (unless a state_dict is given)
            exporter.check_exportable(self, weights=kwargs.get("state_dict", args[0] if args else None) is None)
        push = kwargs.pop("push_to_hub", False)
        hub_kwargs = {k: kwargs.pop(k) for k in _HUB_KWARGS if k in kwargs}
        super().save_pretrained(save_directory, is_main_process, *args, **kwargs)
        if not writes:
            return None
        exporter.add_remote_code(self, save_directory, repo_id=hub_kwargs.get("repo_id"), model_card="keep_foreign")
        if push:
            hub_kwargs.setdefault("repo_id", Path(save_directory).name)  # transformers' default
            exporter.upload_folder(save_directory, token=kwargs.get("token"), **hub_kwargs)
        return None

    def push_to_hub(self, repo_id: str, *, self_contained: bool | None = None, **kwargs):
        """``PreTrainedModel.push_to_hub`` that uploads the self-contained folder of
        :meth:`save_pretrained` with its model card (transformers' own would replace the card with a
        generic one). Takes the same keywords: ``commit_message``, ``commit_description``,
        ``private``, ``token``, ``revision``, ``create_pr``, ``max_shard_size``, ``tags``."""
        exporter = self._exporter(self_contained)
        if exporter is None:
            return super().push_to_hub(repo_id, **kwargs)
        unknown = set(kwargs) - set(_HUB_KWARGS) - {"token", "max_shard_size", "tags"}
        if unknown:
            raise TypeError(f"push_to_hub got unexpected keyword arguments {sorted(unknown)}")
        return exporter.push_to_hub(self, repo_id, **kwargs)

    def get_input_embeddings(self):
        return self.backbone.vocab_embed

    def get_output_embeddings(self):
        return self.backbone.output_layer.linear

    # --- method hooks -------------------------------------------------------------------------
    def parameterize(self, logits, x_t, level: NoiseLevel):
        raise NotImplementedError

    def loss_per_token(self, output, x0, x_t, level: NoiseLevel):
        raise NotImplementedError

    def backbone_conditioning(self, level: NoiseLevel):
        if self.config.time_conditioning:
            return level.sigma
        return torch.zeros_like(level.sigma)

    # --- input checks -------------------------------------------------------------------------
    def _check_ids(self, ids, name, allow_mask=True):
        if ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
        bad = (ids < 0) | (ids >= self.config.vocab_size)
        if name == "labels":
            bad &= ids != -100
        if bad.any():
            raise ValueError(f"{name} has ids outside [0, {self.config.vocab_size}) (labels may also be -100)")
        if not allow_mask and self.graph.mask_token_id is not None:
            if (ids == self.graph.mask_token_id).any():
                raise ValueError(f"{name} must not contain the mask token id {self.graph.mask_token_id}")

    def _check_timesteps(self, timesteps, batch_size, device):
        timesteps = torch.as_tensor(timesteps, dtype=torch.float32, device=device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(batch_size)
        if timesteps.shape != (batch_size,):
            raise ValueError(f"timesteps must be a scalar or of shape ({batch_size},), got {tuple(timesteps.shape)}")
        if ((timesteps < 0) | (timesteps > 1)).any() or torch.isnan(timesteps).any():
            raise ValueError("timesteps must lie in [0, 1] (t=0 is clean data, t=1 fully noised)")
        return timesteps

    def _check_attention_mask(self, attention_mask, shape):
        if attention_mask is not None and attention_mask.dim() == 2 and tuple(attention_mask.shape) != tuple(shape):
            raise ValueError(
                f"attention_mask must have the shape of input_ids {tuple(shape)}, got {tuple(attention_mask.shape)}"
            )
        if attention_mask is not None and attention_mask.dim() not in (2, 4):
            raise ValueError(
                f"attention_mask must be [batch, length] (or a 4-D boolean mask), got {attention_mask.dim()}-D"
            )
        if attention_mask is not None and attention_mask.dim() == 4:
            batch, length = shape
            b, h, q, k = attention_mask.shape
            if b not in (1, batch) or h not in (1, self.config.num_attention_heads) or (q, k) != (length, length):
                raise ValueError(
                    f"a 4-D attention_mask must be [batch or 1, heads or 1, length, length] = "
                    f"[{batch} or 1, {self.config.num_attention_heads} or 1, {length}, {length}], got {tuple(attention_mask.shape)}"
                )

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
            Diffusion time. If omitted with `labels`, it is drawn by the model's time sampler and
            x_t is drawn from the forward process.
        labels (`torch.LongTensor` of shape `(batch, length)`, *optional*):
            The clean tokens x0; -100 marks positions that carry no loss and stay un-noised.
        """
        if input_ids is None and labels is None:
            raise ValueError("forward needs input_ids (the noisy state) or labels (the clean tokens)")
        ref = input_ids if input_ids is not None else labels
        if input_ids is not None:
            self._check_ids(input_ids, "input_ids")
        if labels is not None:
            self._check_ids(labels, "labels", allow_mask=False)
            if input_ids is not None and labels.shape != input_ids.shape:
                raise ValueError(
                    f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}"
                )
        self._check_attention_mask(attention_mask, ref.shape)
        batch_size = ref.shape[0]

        loss_mask = None
        if labels is not None:
            loss_mask = labels != -100
            if attention_mask is not None and attention_mask.dim() == 2:
                loss_mask = loss_mask & attention_mask.bool()
            clean = input_ids if input_ids is not None else torch.zeros_like(labels)
            x0 = torch.where(labels != -100, labels, clean)
        if timesteps is None:
            if labels is None:
                raise ValueError("timesteps is required when labels are not given (input_ids is then x_t)")
            t = self.time_sampler(batch_size, device=ref.device, generator=generator)
            x_t = self.graph.sample_xt(x0, self.schedule(t).sigma, generator=generator)
            x_t = torch.where(loss_mask, x_t, x0)  # unlabelled positions are conditioning: kept clean
        else:
            if input_ids is None:
                raise ValueError("with timesteps, input_ids (the noisy state x_t) is required")
            t = self._check_timesteps(timesteps, batch_size, ref.device)
            x_t = input_ids

        level = self.schedule(t)
        hidden = self.backbone(x_t, self.backbone_conditioning(level), attention_mask, position_ids)
        logits = self.parameterize(hidden, x_t, level)

        loss = per_token = None
        if labels is not None:
            x0_safe = torch.where(loss_mask, x0, x_t)
            per_token = self.loss_per_token(logits, x0_safe, x_t, level) * loss_mask
            loss = reduce_loss(per_token, loss_mask, self.config.loss_reduction, num_items_in_batch)

        out = DiffusionLMOutput(loss=loss, logits=logits, loss_per_token=per_token, timesteps=t, noisy_input_ids=x_t)
        if return_dict is False:
            return out.to_tuple()
        return out

    # --- likelihood ---------------------------------------------------------------------------
    @torch.no_grad()
    def negative_elbo(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        t_min: float | None = None,
    ) -> torch.Tensor:
        """Monte-Carlo upper bound on -log p(input_ids), in nats, per sequence ([B], float32).

        Averages ``num_samples`` draws of t, stratified over [t_min, 1] (one draw per stratum, so
        the estimate stays unbiased with lower variance), each with a fresh x_t. Padding
        (``attention_mask == 0``) is neither noised nor scored. ``t_min`` defaults to the training
        ``sampling_eps``; 0 integrates the whole of [0, 1].
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self._check_ids(input_ids, "input_ids", allow_mask=False)
        t_min = self.config.sampling_eps if t_min is None else t_min
        if not 0.0 <= t_min < 1.0:
            raise ValueError(f"t_min must be in [0, 1), got {t_min}")
        b = input_ids.shape[0]
        labels = input_ids if attention_mask is None else input_ids.masked_fill(attention_mask == 0, -100)
        total = torch.zeros(b, dtype=torch.float64, device=input_ids.device)
        for k in range(num_samples):
            u = torch.rand(b, generator=generator, device=input_ids.device)
            t = t_min + (1 - t_min) * (k + u) / num_samples
            t = t.clamp(1e-6, 1 - 1e-6)  # sigma(1) is infinite when the schedule has no eps
            loss_mask = labels != -100
            x_t = torch.where(
                loss_mask, self.graph.sample_xt(input_ids, self.schedule(t).sigma, generator=generator), input_ids
            )
            out = self(input_ids=x_t, attention_mask=attention_mask, timesteps=t, labels=labels)
            total += out.loss_per_token.double().sum(-1)
        return (total / num_samples).float()
