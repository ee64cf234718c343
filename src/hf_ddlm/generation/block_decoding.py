"""Block-by-block generation for block diffusion models (BD3-LM sec. 3.3, bd3lms ``_semi_ar_sampler``).

The canvas is cut into blocks of ``block_size``. Leading blocks that are entirely given (a prompt)
are encoded once; every later block starts all-mask (given tokens inside it stay fixed) and is
denoised by the sampler, the network seeing the clean prefix and the block:

* ``use_cache`` (default): one forward of the block reads a ``BlockKVCache`` of the prefix; once
  the block is clean its keys and values are committed -- by the next block's first forward, fed
  [clean block ; next block] under the block-causal mask (as AR decoding feeds the last token), or
  by a separate forward (time-conditioned models, and at the window boundary). Exact: the cached
  logits equal the uncached ones (the prefix's keys never change under the block-causal mask).
* ``use_cache=False``: every step re-encodes the prefix under the block-causal mask. A backbone
  whose cache cannot slide (``block_kv_cache_slides = False``: a ``TransformersBackbone``, whose
  absolute positions, e.g. GPT-2's, cannot be re-based) decodes this way past the model length.

Past the model length L both follow the official code: without a cache the window is the last L
tokens at positions 0..L-1; the cache keeps its last L - block_size keys as they were computed and
re-bases their positions (so the two paths differ there, as they do officially).

Sampling details:

* ``sampler="first_hitting"`` (default): one token per network call, with per-row times (the
  first-hitting protocol of ``samplers.base.Sampler``). The
  revealed position is drawn first (it is uniform among the masked ones, whatever p_theta), so
  the output head runs on that row only, as an AR model's does on its last token.
  ``"block_ancestral"`` / ``"ancestral"``: ``num_inference_steps`` grid steps per block, then the
  argmax of p_theta for tokens still masked. Without time conditioning, a step that changes no token
  reuses the network output (exact).
* nucleus: the official variant is the sampler's ``nucleus_p`` (keeps cumulative mass <= p); HF's
  ``top_p`` (keeps the token that crosses p), ``top_k`` and ``temperature`` act on p_theta before it.
* length: ``max_new_tokens`` / ``max_length`` (default: the model length); it may exceed the model
  length. A length that is not a multiple of the block size is generated as whole blocks and cut
  (the first tokens of a block keep their exact marginal).
* stopping: with ``eos_token_id`` set, a row is finished at its first generated EOS (the official
  ``var_length``, whose BOS = EOS is the prompt here); later tokens become ``pad_token_id`` (EOS when
  unset), the output is cut after the longest row, and decoding stops when every row has finished.
* unconditional generation starts from ``bos_token_id`` when set (the official sampler writes BOS
  at position 0, which its training never masks), else from an all-mask canvas.
* a left-padded batch (``attention_mask``) never attends to padding; blocks stay aligned to the
  canvas, so a row's blocks start where the model was trained to expect them only when its
  padding is a multiple of ``block_size``. ``infill_mask`` fixes tokens anywhere (carry-over).
* not reproduced: the official entropy rule (reject or cut a sample whose last 256 tokens have a
  unigram entropy below 4), a filter of the evaluation script rather than of the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .cache import BlockKVCache
from .configuration import DiffusionGenerationConfig
from .mixin import DiffusionGenerateOutput, DiffusionGenerationMixin
from .utils import (
    build_sampler,
    check_logits_processing,
    filter_model_output,
    process_model_output,
    repeat_rows,
    resolve_generator,
    should_stop,
)


@dataclass
class BlockDiffusionGenerateOutput(DiffusionGenerateOutput):
    num_commit_evaluations: int | None = None  # forwards that only encode clean blocks (prompt, commits)


def _eos_ids(eos_token_id, vocab_size: int, mask_token_id: int) -> list[int]:
    if eos_token_id is None:
        return []
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    for e in ids:
        if not isinstance(e, int) or isinstance(e, bool) or not 0 <= e < vocab_size:
            raise ValueError(
                f"eos_token_id {e!r} is not a token id in [0, {vocab_size}): generation could never stop at it"
            )
        if e == mask_token_id:
            raise ValueError(
                f"eos_token_id {e} is the mask token, which a finished block never holds: generation could never stop at it "
                "(pass eos_token_id=None for fixed-length generation)"
            )
    return ids


def _block_log_probs(model, x, lo, hi, t, cache, key_mask, window, positions=None):
    """log p_theta(x0 | prefix, block) of the block x[:, lo:hi]: [B, hi - lo, V], or [B, K, V] at
    the block positions ``positions`` [B, K] only (the output head skips the other rows)."""
    t = t if model.config.time_conditioning else None  # only a time-conditioned network reads t
    batch, n = x.shape[0], hi - lo
    if positions is None:
        positions = torch.arange(n, device=x.device).expand(batch, n)
    if cache is not None:
        if cache.pending is not None:
            # one forward commits the previous (clean) block and denoises this one, as AR decoding
            # feeds the last token: block-causal between the two, so the committed keys are those
            # of a separate commit and this block's output is that of a cache read
            done, cache.pending = cache.pending, None
            ids, offset, view = torch.cat([done, x[:, lo:hi]], 1), done.shape[1], cache.commit(length=done.shape[1])
        else:
            ids, offset, view = x[:, lo:hi], 0, cache.read()
        return model.denoise_block(ids, t, cache=view, output_positions=positions + offset)
    start = max(hi - window, 0)  # the official sliding window, re-based to positions 0..
    mask = None if key_mask is None else key_mask[:, start:hi]
    return model.denoise_block(x[:, start:hi], t, attention_mask=mask, output_positions=positions + (lo - start))


def _no_rows(x):
    """``output_positions`` selecting no row: a commit needs the keys and values, not the logits."""
    return torch.zeros(x.shape[0], 0, dtype=torch.long, device=x.device)


def _encode_prefix(model, cache, x, key_mask, t):
    """Commit x (whole blocks): one forward for up to a window of tokens, then block by block
    (the slide of the official cache). Returns the number of forwards."""
    n, window, bs = x.shape[1], cache.window, cache.block_size
    calls, start = 0, 0
    while start < n:
        stop = min(n, window) if start == 0 else start + bs
        mask = None if key_mask is None else key_mask[:, start:stop]
        model.denoise_block(x[:, start:stop], t, cache=cache.commit(key_mask=mask), output_positions=_no_rows(x))
        calls, start = calls + 1, stop
    return calls


def _commit_pending(model, cache, t):
    block, cache.pending = cache.pending, None
    model.denoise_block(block, t, cache=cache.commit(), output_positions=_no_rows(block))
    return 1


class BlockDiffusionGenerationMixin(DiffusionGenerationMixin):
    """``generate`` for block diffusion models (BD3-LM): block by block with a KV cache (module
    docstring). The model implements ``denoise_block(ids, t, cache=..., attention_mask=...,
    output_positions=...)`` -> log p_theta(x0 | .) at ``output_positions``. Listed on the model class
    itself (``can_generate()`` looks for "GenerationMixin" among its direct bases); the configuration
    handling is ``DiffusionGenerationMixin``'s."""

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        generation_config: DiffusionGenerationConfig | None = None,
        infill_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        callback=None,
        streamer=None,
        progress_bar: bool = False,
        return_dict_in_generate: bool = False,
        output_trajectory: bool = False,
        uniform_noise_fn=None,
        logits_processor=None,
        stopping_criteria=None,
        **kwargs,
    ):
        r"""Generate token ids block by block; the arguments are those of
        ``DiffusionGenerationMixin.generate``. Returns the ids [B, L], or a
        ``BlockDiffusionGenerateOutput`` (with ``num_commit_evaluations``) with
        ``return_dict_in_generate=True``. When ``stopping_criteria`` stop the loop, the current
        block is finished (its masked tokens denoised) and the canvas ends with it."""
        gc = self._prepare_generation_config(generation_config, kwargs)
        check_logits_processing(self, logits_processor, stopping_criteria)
        config, device = self.config, self.device
        bs, mask_id, window = config.block_size, config.mask_token_id, config.max_position_embeddings
        generator = resolve_generator(generator, seed, device)
        eos = _eos_ids(gc.eos_token_id, config.vocab_size, mask_id)
        pad_id = gc.pad_token_id if gc.pad_token_id is not None else (eos[0] if eos else None)
        sampler = build_sampler(self, gc)
        first_hitting = sampler.first_hitting  # the optional protocol of the Sampler contract (samplers.base)
        if not first_hitting:
            grid = sampler.set_timesteps(gc.num_inference_steps, gc.t_min, device)

        copies = gc.num_return_sequences or 1
        if input_ids is None and infill_mask is None and gc.bos_token_id is not None:
            input_ids = torch.full((copies, 1), gc.bos_token_id, dtype=torch.long, device=device)
        elif input_ids is not None:
            self._check_ids(input_ids, "input_ids")
            input_ids, attention_mask, infill_mask = repeat_rows(
                copies, input_ids.to(device), attention_mask, infill_mask
            )
        x, fixed, attention_mask = self._build_canvas(input_ids, attention_mask, infill_mask, gc, device, generator)
        batch, length = x.shape
        total = math.ceil(length / bs) * bs  # whole blocks; cut to `length` at the end
        x = torch.cat([x, torch.full((batch, total - length), mask_id, dtype=x.dtype, device=device)], dim=1)
        fixed = torch.cat([fixed, torch.zeros(batch, total - length, dtype=torch.bool, device=device)], dim=1)
        key_mask = None
        if attention_mask is not None and not attention_mask.bool().all():
            key_mask = torch.cat(
                [attention_mask.bool(), torch.ones(batch, total - length, dtype=torch.bool, device=device)], 1
            )

        reuse_ok = not config.time_conditioning  # the output depends on the tokens only
        noise = (lambda shape: uniform_noise_fn(shape)) if uniform_noise_fn is not None else (lambda shape: None)
        # a backbone whose cache cannot slide (a transformers model) caches canvases within the window
        slides = getattr(self.backbone, "block_kv_cache_slides", True)
        use_cache = gc.use_cache is not False and (slides or total <= window)
        cache = BlockKVCache.for_model(self) if use_cache else None
        num_blocks = total // bs
        first = 0  # leading blocks that are given entirely are only encoded
        while first < num_blocks and fixed[:, first * bs : (first + 1) * bs].all():
            first += 1
        ones = torch.ones(batch, device=device)
        commits = 0
        if cache is not None and first > 0:
            commits += _encode_prefix(self, cache, x[:, : first * bs], key_mask, ones)
        # the streamer sees the prompt first, a draft of the generated part at every step, and each
        # block's generated tokens once the block is decoded (the whole canvas when infilling)
        prompt_len = input_ids.shape[1] if input_ids is not None and infill_mask is None else 0
        if streamer is not None:
            streamer.put(x[:, :prompt_len].cpu())

        nfe, step, trajectory = 0, 0, []
        t = ones  # the time of the last denoising step, used when a pending block is committed
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        stopped = False  # by stopping_criteria
        blocks = range(first, num_blocks)
        if progress_bar:
            from tqdm.auto import tqdm

            blocks = tqdm(blocks, desc="blocks")
        for k in blocks:
            lo, hi = k * bs, (k + 1) * bs
            block, given = x[:, lo:hi].clone(), fixed[:, lo:hi]
            if cache is not None and cache.pending is not None and given.all():  # no forward to fuse it with
                commits += _commit_pending(self, cache, t)
            t, out, i = ones, None, 0
            masked = int((block == mask_id).sum(-1).max())
            # first-hitting reveals one token per row and step: exactly `masked` steps
            steps = masked if first_hitting else (gc.num_inference_steps if masked else 0)
            keep_given = bool(given.any())
            while i < steps:
                if first_hitting:  # the revealed position first: p_theta is needed there only
                    s = sampler.next_time(t, block, generator)
                    where = sampler.choose_positions(block, generator)
                    out = _block_log_probs(self, x, lo, hi, t, cache, key_mask, window, where)
                    out = filter_model_output(out, "log_probs", block.gather(1, where), self.graph, gc)
                    out = process_model_output(out, "log_probs", block.gather(1, where) == mask_id, x, logits_processor)
                    nfe += 1
                    new = sampler.reveal(out[:, 0], block, where, generator, noise((batch, out.shape[-1]))).prev_sample
                else:
                    t, s = grid[i].expand(batch), grid[i + 1].expand(batch)
                    if out is None or not reuse_ok:
                        out = _block_log_probs(self, x, lo, hi, t, cache, key_mask, window)
                        out = filter_model_output(out, "log_probs", block, self.graph, gc)
                        out = process_model_output(out, "log_probs", block == mask_id, x, logits_processor)
                        nfe += 1
                    new = sampler.step(out, block, t, s, generator, noise((*block.shape, out.shape[-1]))).prev_sample
                if keep_given:
                    new = torch.where(given, block, new)
                scores = out
                if first_hitting or not torch.equal(new, block):  # first-hitting always changes the block
                    out = None
                block, t, i = new, s, i + 1
                if not first_hitting and not (block == mask_id).any():
                    i = steps
                x[:, lo:hi] = block
                step += 1
                self._report(
                    step, t[0], x[:, :length], callback, streamer, trajectory if output_trajectory else None, prompt_len
                )
                if should_stop(stopping_criteria, x[:, :length], scores):
                    stopped = True
                    break
            if (block == mask_id).any():  # the grid ended with tokens still masked: noise removal
                if out is None or not reuse_ok:
                    out = _block_log_probs(self, x, lo, hi, t, cache, key_mask, window)
                    out = filter_model_output(out, "log_probs", block, self.graph, gc)
                    out = process_model_output(out, "log_probs", block == mask_id, x, logits_processor)
                    nfe += 1
                block = torch.where(given, block, sampler.denoise(out, block, t, generator).prev_sample)
                x[:, lo:hi] = block
            if streamer is not None and min(hi, length) > max(lo, prompt_len):
                streamer.put(x[:, max(lo, prompt_len) : min(hi, length)].cpu().clone())
            if eos:
                finished |= (torch.isin(block, torch.tensor(eos, device=device)) & ~given).any(-1)
                if finished.all():
                    break
            if stopped:  # the canvas ends with this block
                length = min(length, hi)
                break
            if cache is not None and k < num_blocks - 1:
                # commit with the next block's first forward when that is exact: the conditioning does
                # not depend on t, and both blocks fit the window (past it the official cache slides first)
                cache.pending = block
                if config.time_conditioning or cache.length + 2 * bs > window:
                    commits += _commit_pending(self, cache, t)

        x = x[:, :length]
        if eos:  # everything after a row's first generated EOS is padding
            is_eos = torch.isin(x, torch.tensor(eos, device=device)) & ~fixed[:, :length]
            has_eos = is_eos.any(-1)
            stop = torch.where(has_eos, is_eos.int().argmax(-1), torch.full_like(has_eos, length, dtype=torch.long))
            x = x.masked_fill(torch.arange(length, device=device)[None] > stop[:, None], pad_id)
            if has_eos.all():
                x = x[:, : int(stop.max()) + 1]
        if streamer is not None:
            streamer.end()
        self.last_num_function_evaluations = nfe
        self.last_num_commit_evaluations = commits
        if return_dict_in_generate:
            return BlockDiffusionGenerateOutput(
                sequences=x,
                num_function_evaluations=nfe,
                trajectory=trajectory if output_trajectory else None,
                num_commit_evaluations=commits,
            )
        return x


__all__ = ["BlockDiffusionGenerateOutput", "BlockDiffusionGenerationMixin"]
