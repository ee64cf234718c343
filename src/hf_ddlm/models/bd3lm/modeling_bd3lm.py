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
from ...parameterizations import subs_log_probs
from ..modeling_utils import DiffusionLMOutput, DiffusionPreTrainedModel, reduce_loss
from .configuration_bd3lm import BD3LMConfig

# the official cap on the conditioning sigma: sigma(1) of the eps = 1e-3 log-linear schedule
SIGMA_MAX = -math.log(1e-3)


def block_nelbo(log_probs, x0, t, noise_eps: float = 0.0):
    """Per-token NELBO [B, L]: -w(t) log p_theta(x0 | x_t), t per token (constant on a block).

    w = -alpha'_t / (1 - alpha_t) (MDLM eq. 11). For BD3-LM's schedule (mask probability t,
    eps = 0) it is 1/t in closed form, bd3lms' loss scale -1/t (finite at t = 1, where
    dsigma / expm1(sigma) would be inf / inf). eps > 0 gives MDLM's (1 - eps) / ((1 - eps) t) = 1/t
    as well, computed as bd3lms' ``mdlm_loss_scale`` does, via sigma.
    """
    log_p = torch.gather(log_probs, -1, x0.unsqueeze(-1)).squeeze(-1)
    if noise_eps == 0:
        return -log_p / t
    sigma = -torch.log1p(-(1 - noise_eps) * t)
    dsigma = (1 - noise_eps) / (1 - (1 - noise_eps) * t)
    return -log_p * dsigma / torch.expm1(sigma)


class BD3LMPreTrainedModel(DiffusionPreTrainedModel):
    config_class = BD3LMConfig
    _supports_flex_attn = True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, BD3LMPreTrainedModel) and module.config.var_min:
            init.copy_(module.sampling_eps_min, torch.tensor(float(module.config.sampling_eps_min)))
            init.copy_(module.sampling_eps_max, torch.tensor(float(module.config.sampling_eps_max)))


class BD3LMForDiffusionLM(BD3LMPreTrainedModel, BlockDiffusionGenerationMixin):
    """``logits`` are the SUBS log-probabilities log p_theta(x0 | x_t) [B, L, V] of the x_t half (or
    of the tokens fed in sampling mode); ``loss`` the token-mean NELBO (the official reduction);
    ``timesteps`` the per-token t [B, L]."""

    default_sampler = "first_hitting"
    model_output_kind = "log_probs"

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

    # --- time and conditioning ----------------------------------------------------------------
    def sample_block_times(self, batch_size, num_blocks, device=None, generator=None) -> torch.Tensor:
        """t [B, num_blocks] on [beta, omega]: one draw per block, stratified over the B * num_blocks
        cells when ``antithetic_sampling`` (bd3lms ``_sample_t``); beta = omega = 1 gives t = 1."""
        beta, omega = self.config.sampling_eps_min, self.config.sampling_eps_max
        n = batch_size * num_blocks
        u = torch.rand(batch_size, num_blocks, device=device, generator=generator)
        if self.config.antithetic_sampling:
            u = (u / n + torch.arange(n, device=device).view(batch_size, num_blocks) / n) % 1
        if beta >= 1 and omega >= 1:
            return torch.ones_like(u)
        return beta + (omega - beta) * u

    def _conditioning(self, t_first):
        """The backbone's sigma [B]: zero without time conditioning; else, as the official code,
        sigma(t) of the first block's t, capped at sigma(1) of the eps = 1e-3 schedule."""
        if not self.config.time_conditioning:
            return torch.zeros_like(t_first, dtype=torch.float32)
        return torch.clamp(-torch.log1p(-t_first.float()), max=SIGMA_MAX)

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
        use_flex = self.config.attn_backend == "flex" and flex_attention_usable(device)
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

    # --- forward ------------------------------------------------------------------------------
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
        cache=None,
        output_positions: torch.LongTensor | None = None,
        **kwargs,
    ) -> DiffusionLMOutput:
        r"""
        With `labels` (x0; training and likelihood): `timesteps` (scalar, `(B,)`, `(B, L / block_size)`
        or `(B, L)`) with `input_ids` = x_t gives a deterministic loss; without `timesteps`, t is
        drawn per block on [sampling_eps_min, sampling_eps_max] and x_t from the forward process.
        The length must be a multiple of `block_size`. `attention_mask` [B, L] marks padding.

        Without `labels` (sampling mode): `input_ids` is a clean prefix followed by the tokens being
        denoised (block-causal attention, positions `position_ids` or 0..n-1), or, with `cache`
        (a `BlockKVCache.read()` / `.commit()` view), the new tokens after the cached prefix.
        `timesteps` [B] is only needed by a time-conditioned model. `output_positions` [B, K]: the
        rows to return (the output head runs on those only).
        """
        if labels is None:
            out = self._sampling_forward(input_ids, attention_mask, timesteps, position_ids, cache, output_positions)
        else:
            if cache is not None or position_ids is not None or output_positions is not None:
                raise ValueError(
                    "cache and position_ids are for sampling mode (no labels); training uses positions 0..L-1"
                )
            out = self._training_forward(input_ids, attention_mask, timesteps, labels, generator, num_items_in_batch)
        return out.to_tuple() if return_dict is False else out

    def _training_forward(self, input_ids, attention_mask, timesteps, labels, generator, num_items_in_batch):
        self._check_ids(labels, "labels", allow_mask=False)
        if input_ids is not None:
            self._check_ids(input_ids, "input_ids")
            if labels.shape != input_ids.shape:
                raise ValueError(
                    f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}"
                )
        self._check_attention_mask(attention_mask, labels.shape)
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError("attention_mask must be a [batch, length] padding mask (BD3-LM builds its own block mask)")
        batch_size, length = labels.shape
        self._check_length(length)
        device, bs = labels.device, self.config.block_size

        loss_mask = labels != -100
        if attention_mask is not None:
            loss_mask = loss_mask & attention_mask.bool()
        clean = input_ids if input_ids is not None else torch.zeros_like(labels)
        x0 = torch.where(labels != -100, labels, clean)
        if timesteps is None:
            t = self.sample_block_times(batch_size, length // bs, device, generator).repeat_interleave(bs, dim=1)
            x_t = self.graph.sample_xt(x0, self.schedule(t).sigma, generator=generator)
            x_t = torch.where(loss_mask, x_t, x0)  # unlabelled positions are conditioning: kept clean
        else:
            if input_ids is None:
                raise ValueError("with timesteps, input_ids (the noisy state x_t) is required")
            t = self._block_timesteps(timesteps, batch_size, length, device)
            x_t = input_ids
        if self.config.ignore_bos:  # the official ignore_bos: position 0 is never noised nor scored
            x_t, loss_mask = x_t.clone(), loss_mask.clone()
            x_t[:, 0], loss_mask[:, 0] = x0[:, 0], False

        positions = torch.arange(length, device=device).repeat(2)  # x_t and x0 token l share position l
        mask = self._training_mask(length, attention_mask, device, batch_size)
        hidden = self.backbone(torch.cat([x_t, x0], dim=1), self._conditioning(t[:, 0]), mask, positions)
        log_probs = subs_log_probs(hidden[:, :length], x_t, self.config.mask_token_id)

        x0_safe = torch.where(loss_mask, x0, x_t)
        per_token = block_nelbo(log_probs, x0_safe, t, self.config.noise_eps) * loss_mask
        loss = reduce_loss(per_token, loss_mask, self.config.loss_reduction, num_items_in_batch)
        return DiffusionLMOutput(
            loss=loss, logits=log_probs, loss_per_token=per_token, timesteps=t, noisy_input_ids=x_t
        )

    def _sampling_forward(self, input_ids, attention_mask, timesteps, position_ids, cache, output_positions=None):
        if input_ids is None:
            raise ValueError("forward needs input_ids (the noisy state) or labels (the clean tokens)")
        self._check_ids(input_ids, "input_ids")
        t = None
        if timesteps is not None:
            t = self._check_timesteps(timesteps, input_ids.shape[0], input_ids.device)
        elif self.config.time_conditioning:
            raise ValueError("a time-conditioned model needs timesteps in sampling mode")
        if cache is not None and (attention_mask is not None or position_ids is not None):
            raise ValueError(
                "with a cache, padding and positions come from the cache (pass key_mask to cache.commit())"
            )
        self._check_attention_mask(attention_mask, input_ids.shape)
        log_probs = self.denoise_block(input_ids, t, cache, attention_mask, position_ids, output_positions)
        return DiffusionLMOutput(logits=log_probs, timesteps=t, noisy_input_ids=input_ids)

    def denoise_block(
        self, input_ids, timesteps=None, cache=None, attention_mask=None, position_ids=None, output_positions=None
    ):
        """SUBS log p_theta(x0 | x) of sampling mode, without input checks (the decoding loop's
        entry point; ``forward`` checks and wraps it): block-causal attention over ``input_ids``
        (``attention_mask`` [B, n] marks padding), or the new tokens after a ``cache`` view."""
        batch_size, n = input_ids.shape
        device = input_ids.device
        if timesteps is None:
            sigma = torch.zeros(batch_size, device=device)
        else:
            sigma = self._conditioning(timesteps)
        if cache is not None:
            mask = cache.attention_mask(n, batch_size, device)
            positions = cache.position_ids(n, device)
            hidden = self.backbone(
                input_ids, sigma, mask, positions, kv_caches=cache.layers, output_positions=output_positions
            )
            cache.close(n)
        else:
            mask_fn = block_causal_mask(self.config.block_size)
            if attention_mask is not None and not attention_mask.bool().all():
                mask_fn = with_key_padding(mask_fn, attention_mask.bool())
                mask = materialize_mask(mask_fn, n, n, device, batch_size)
            else:
                mask = materialize_mask(mask_fn, n, n, device)
            hidden = self.backbone(input_ids, sigma, mask, position_ids, output_positions=output_positions)
        x_t = input_ids if output_positions is None else input_ids.gather(1, output_positions)
        return subs_log_probs(hidden, x_t, self.config.mask_token_id)


__all__ = ["BD3LMForDiffusionLM", "BD3LMPreTrainedModel", "block_nelbo"]
