"""BD3-LM as a Hugging Face model: MDLM's SUBS denoiser applied block by block.

A sequence of length L is cut into blocks of ``block_size`` tokens. The likelihood factorises
autoregressively over blocks, and each block is a masked diffusion conditioned on the clean blocks
before it (BD3-LM eq. 3). Its NELBO is MDLM's, per block: with mask probability t (alpha_t = 1 - t)
the weight -alpha'_t / (1 - alpha_t) is 1/t, and t is drawn once per block.

Training computes every block's term in one forward (BD3-LM sec. 3.2): the backbone runs on the
concatenation [x_t ; x_0] (length 2L, both halves at rotary positions 0..L-1) under
``block_diff_mask``, so the noisy block b attends to itself and to the clean blocks < b; the loss
reads the x_t half. Without ``labels`` the model is in sampling mode: ``input_ids`` is a clean
prefix followed by the block being denoised, under the block-causal mask, or one block that reads
a ``BlockKVCache`` of the prefix (``cache=cache.read()`` / ``cache.commit()``).
``generate`` decodes block by block (``hf_ddlm.generation.block_decoding``).
"""

from __future__ import annotations

import math

import torch
from transformers import initialization as init

from ...backbones.attention import (
    block_causal_mask,
    block_diff_mask,
    flex_attention_usable,
    flex_block_mask,
    materialize_mask,
    with_key_padding,
)
from ...generation.block_decoding import BlockDiffusionGenerationMixin
from ...objectives import masked_diffusion_nelbo
from ...parameterizations import subs_log_probs
from ...processes import TimeSampler
from ..adaptation import CausalLMAdaptationMixin
from ..modeling_utils import DiffusionPreTrainedModel, NoisyInputs
from .configuration_bd3lm import BD3LMConfig


class BD3LMPreTrainedModel(DiffusionPreTrainedModel):
    config_class = BD3LMConfig
    _supports_flex_attn = True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, BD3LMPreTrainedModel) and module.config.var_min:
            init.copy_(module.sampling_eps_min, torch.tensor(float(module.config.sampling_eps_min)))
            init.copy_(module.sampling_eps_max, torch.tensor(float(module.config.sampling_eps_max)))


class BD3LMForDiffusionLM(CausalLMAdaptationMixin, BD3LMPreTrainedModel, BlockDiffusionGenerationMixin):
    """``logits`` are the SUBS log-probabilities log p_theta(x0 | x_t) [B, L, V] of the x_t half (or
    of the tokens fed in sampling mode); ``loss`` the token-mean NELBO (the official reduction);
    ``timesteps`` the per-token t [B, L]. ``from_causal_lm`` adapts a pretrained causal LM (without
    shifted prediction or annealing: its attention is the block mask)."""

    adapt_with_shifted_prediction = False

    default_sampler = "first_hitting"
    model_output_kind = "log_probs"
    # bd3lms caps the conditioning sigma at sigma(1) of its eps = 1e-3 log-linear noise, so t = 1
    # (sigma = inf under the eps = 0 masking schedule) embeds finitely
    max_conditioning_sigma = -math.log(1e-3)

    def __init__(self, config: BD3LMConfig):
        super().__init__(config)
        if config.var_min:  # the official buffers that carry the clipped range [beta, omega]
            self.register_buffer("sampling_eps_min", torch.tensor(float(config.sampling_eps_min)))
            self.register_buffer("sampling_eps_max", torch.tensor(float(config.sampling_eps_max)))
        self._masks = {}  # materialised training masks, per (backend, length, device)
        self.post_init()

    # --- loading and saving: the clipped range travels in the buffers, as in the official code ---
    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if model.config.var_min:  # the tuned range lives in the buffers (the config keeps init values)
            beta, omega = (float(f"{float(b):.7g}") for b in (model.sampling_eps_min, model.sampling_eps_max))
            model.config.sampling_eps_min, model.config.sampling_eps_max = beta, omega
            model.config.validate_block_diffusion()
        return loaded

    def save_pretrained(self, *args, **kwargs):
        if self.config.var_min:
            with torch.no_grad():
                self.sampling_eps_min.fill_(self.config.sampling_eps_min)
                self.sampling_eps_max.fill_(self.config.sampling_eps_max)
            state_dict = kwargs.get("state_dict")
            if state_dict is not None and "sampling_eps_min" in state_dict:
                state_dict["sampling_eps_min"], state_dict["sampling_eps_max"] = (
                    self.sampling_eps_min,
                    self.sampling_eps_max,
                )
        return super().save_pretrained(*args, **kwargs)

    # --- forward hooks: one t per block, [x_t; x0] under the block-diffusion mask ----------------
    @property
    def time_sampler(self) -> TimeSampler:
        """t on the clipped range [beta, omega] = [sampling_eps_min, sampling_eps_max], one draw per
        block, stratified over the B x num_blocks cells when ``antithetic_sampling`` (bd3lms
        ``_sample_t``); beta = omega = 1 gives t = 1. Read from the config at every draw: var_min
        training tunes the range."""
        c = self.config
        return TimeSampler(c.sampling_eps_min, c.antithetic_sampling, eps_max=c.sampling_eps_max)

    def draw_timesteps(self, x0, generator=None):
        batch_size, length = x0.shape
        bs = self.config.block_size
        t = self.time_sampler(batch_size, device=x0.device, generator=generator, num_blocks=length // bs)
        return t.repeat_interleave(bs, dim=1)

    def check_training_inputs(self, labels, attention_mask, position_ids, **kwargs):
        if position_ids is not None or kwargs.get("cache") is not None or kwargs.get("output_positions") is not None:
            raise ValueError("cache and position_ids are for sampling mode (no labels); training uses positions 0..L-1")
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError("attention_mask must be a [batch, length] padding mask (BD3-LM builds its own block mask)")
        self._check_length(labels.shape[1])

    def loss_positions(self, labels, attention_mask):
        loss_mask = super().loss_positions(labels, attention_mask)
        if self.config.ignore_bos:  # the official ignore_bos: position 0 is never noised nor scored
            loss_mask = loss_mask.clone()
            loss_mask[:, 0] = False
        return loss_mask

    def noisy_inputs_from(self, input_ids, timesteps, x0, loss_mask):
        t = self._block_timesteps(timesteps, *input_ids.shape, input_ids.device)
        x_t = input_ids
        if self.config.ignore_bos:
            x_t = x_t.clone()
            x_t[:, 0] = x0[:, 0]
        return NoisyInputs(timesteps=t, x_t=x_t, x0=x0, loss_mask=loss_mask)

    def run_backbone(self, noisy, level, attention_mask, position_ids, **kwargs):
        """Every block's term in one pass (BD3-LM sec. 3.2): the backbone reads [x_t ; x0] (both
        halves at positions 0..L-1) under ``block_diff_mask``; the output is the x_t half. The
        conditioning is sigma of the first block's t, as in the official code."""
        if kwargs.get("inputs_embeds") is not None:
            raise ValueError(
                "inputs_embeds is for sampling mode (no labels): the training pass reads [x_t ; x0], drawn here"
            )
        batch_size, length = noisy.x_t.shape
        device = noisy.x_t.device
        positions = torch.arange(length, device=device).repeat(2)  # x_t and x0 token l share position l
        mask = self._training_mask(length, attention_mask, device, batch_size)
        sigma = self.backbone_conditioning(self.schedule(noisy.timesteps[:, 0]))
        hidden = self.backbone(torch.cat([noisy.x_t, noisy.x0], dim=1), sigma, mask, positions)
        return hidden[:, :length]

    def parameterize(self, logits, x_t, level):
        return subs_log_probs(logits, x_t, self.config.mask_token_id)

    def loss_per_token(self, output, x0, x_t, level, noisy):
        """MDLM's NELBO per block (BD3-LM eq. 3): the weight 1/t with t per token."""
        return masked_diffusion_nelbo(output, x0, self.schedule.masked_nelbo_weight(noisy.timesteps, level))

    def _check_length(self, length):
        bs = self.config.block_size
        if length % bs:
            raise ValueError(
                f"the sequence length ({length}) must be a multiple of block_size ({bs}); pad it, e.g. with "
                f"DiffusionDataCollator(pad_to_multiple_of={bs}) (padding is masked out of attention and loss)"
            )

    def _block_timesteps(self, timesteps, batch_size, length, device):
        """Accepts a scalar, [B] (every block), [B, num_blocks] or [B, L]; returns t per token [B, L]."""
        t = torch.as_tensor(timesteps, dtype=torch.float32, device=device)
        num_blocks = length // self.config.block_size
        if t.dim() == 0:
            t = t.expand(batch_size)
        if t.shape == (batch_size,):
            t = t[:, None].expand(batch_size, length)
        elif t.shape == (batch_size, num_blocks):
            t = t.repeat_interleave(self.config.block_size, dim=1)
        elif t.shape != (batch_size, length):
            raise ValueError(
                f"timesteps must be a scalar or of shape ({batch_size},), ({batch_size}, {num_blocks}) (per block) or "
                f"({batch_size}, {length}) (per token), got {tuple(t.shape)}"
            )
        if ((t <= 0) | (t > 1)).any() or torch.isnan(t).any():
            raise ValueError("timesteps must lie in (0, 1] (t=1 fully noised; the NELBO weight 1/t needs t > 0)")
        return t

    # --- masks --------------------------------------------------------------------------------
    def _training_mask(self, length, attention_mask, device, batch_size):
        # attn_backend="flex" (the official configs' name) is attn_implementation="flex_attention" here
        flex = self.config._attn_implementation == "flex_attention" or self.config.attn_backend == "flex"
        use_flex = flex and flex_attention_usable(device)
        mask_fn = block_diff_mask(self.config.block_size, length)
        if attention_mask is not None and not attention_mask.bool().all():
            # a padded position is a key of neither half
            mask_fn = with_key_padding(mask_fn, attention_mask.bool().repeat(1, 2).to(device))
            build = flex_block_mask if use_flex else materialize_mask
            return build(mask_fn, 2 * length, 2 * length, device, batch_size)
        key = (use_flex, length, str(device))
        if key not in self._masks:
            build = flex_block_mask if use_flex else materialize_mask
            self._masks[key] = build(mask_fn, 2 * length, 2 * length, device)
        return self._masks[key]

    # --- sampling mode -----------------------------------------------------------------------------
    def denoise(self, input_ids, timesteps=None, attention_mask=None, position_ids=None, cache=None, **kwargs):
        r"""Without `labels`: `input_ids` is a clean prefix followed by the tokens being denoised
        (block-causal attention, positions `position_ids` or 0..n-1), or, with `cache` (a
        `BlockKVCache.read()` / `.commit()` view), the new tokens after the cached prefix.
        `timesteps` [B] is only needed by a time-conditioned model. `output_positions` [B, K]: the
        rows to return (the output head runs on those only)."""
        t = None
        if timesteps is not None:
            t = self._check_timesteps(timesteps, input_ids.shape[0], input_ids.device)
        elif self.config.time_conditioning:
            raise ValueError("a time-conditioned model needs timesteps in sampling mode")
        if cache is not None and (attention_mask is not None or position_ids is not None):
            raise ValueError(
                "with a cache, padding and positions come from the cache (pass key_mask to cache.commit())"
            )
        output_positions = kwargs.get("output_positions")
        embeds = self.embeds_of(kwargs.get("inputs_embeds"), input_ids)
        return self.denoise_block(input_ids, t, cache, attention_mask, position_ids, output_positions, embeds), t

    def denoise_block(
        self,
        input_ids,
        timesteps=None,
        cache=None,
        attention_mask=None,
        position_ids=None,
        output_positions=None,
        inputs_embeds=None,
    ):
        """SUBS log p_theta(x0 | x) of sampling mode, without input checks (the decoding loop's
        entry point; ``forward`` checks and wraps it): block-causal attention over ``input_ids``
        (``attention_mask`` [B, n] marks padding), or the new tokens after a ``cache`` view.
        ``inputs_embeds`` replaces the embedding of ``input_ids``."""
        batch_size, n = input_ids.shape
        device = input_ids.device
        if timesteps is None:
            sigma = torch.zeros(batch_size, device=device)
        else:
            sigma = self.backbone_conditioning(self.schedule(timesteps))
        if cache is not None:
            mask = cache.attention_mask(n, batch_size, device)
            positions = cache.position_ids(n, device)
            hidden = self.backbone(
                input_ids,
                sigma,
                mask,
                positions,
                kv_caches=cache.layers,
                output_positions=output_positions,
                **self.embeds_kwargs(inputs_embeds),
            )
            cache.close(n)
        else:
            mask_fn = block_causal_mask(self.config.block_size)
            if attention_mask is not None and not attention_mask.bool().all():
                mask_fn = with_key_padding(mask_fn, attention_mask.bool())
                mask = materialize_mask(mask_fn, n, n, device, batch_size)
            else:
                mask = materialize_mask(mask_fn, n, n, device)
            hidden = self.backbone(
                input_ids,
                sigma,
                mask,
                position_ids,
                output_positions=output_positions,
                **self.embeds_kwargs(inputs_embeds),
            )
        x_t = input_ids if output_positions is None else input_ids.gather(1, output_positions)
        return subs_log_probs(hidden, x_t, self.config.mask_token_id)


__all__ = ["BD3LMForDiffusionLM", "BD3LMPreTrainedModel"]
