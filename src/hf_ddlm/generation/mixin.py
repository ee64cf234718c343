"""``DiffusionGenerationMixin``: ``generate`` by iterative denoising instead of left-to-right decoding.

The loop owns the network calls; samplers (``hf_ddlm.samplers``) only turn the model's output into
the next state. Conditioning is by projection (SEDD eq. 22, MDLM's infilling): fixed positions
(a prompt, or the known tokens of an infilling pattern) are written back after every step, so the
sampler only ever changes free positions. For the absorbing graph fixed tokens are unmasked and
never move anyway. Block diffusion models (BD3-LM) list ``BlockDiffusionGenerationMixin``
(``block_decoding``) instead, which keeps this configuration handling and replaces the loop; the
set-up both loops share is in ``utils``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import GENERATION_CONFIG_NAME, ModelOutput, cached_file

from ..samplers import (
    SAMPLER_ALIASES,
    SAMPLERS,
    ConfidenceSampler,
    SemiAutoregressiveSampler,
    check_block_length,
    clean_log_probs,
)
from .configuration import DiffusionGenerationConfig
from .stopping import prepare_stopping_criteria, stop_finished_rows
from .utils import (
    build_sampler,
    check_generation_config,
    check_logits_processing,
    filter_model_output,
    first_hitting_loop,
    process_model_output,
    repeat_rows,
    resolve_generator,
    should_stop,
    uses_filters,
    warn_about_long_runs,
)


@dataclass
class DiffusionGenerateOutput(ModelOutput):
    sequences: torch.LongTensor | None = None
    num_function_evaluations: int | None = None
    trajectory: list | None = None  # the canvas after every step, when output_trajectory=True
    # steps not run because every row had stopped (stopping criteria): the network calls saved, at
    # one per step (a step whose input did not change would have reused its output instead)
    num_function_evaluations_saved: int | None = None


class DiffusionGenerationMixin:
    """Adds ``generate`` to hf_ddlm models. Listed on each concrete model class so that
    ``can_generate()`` (which looks for "GenerationMixin" among the direct bases) is true."""

    generation_config_class = DiffusionGenerationConfig
    default_sampler = "analytic"
    model_output_kind = "log_score"

    def _default_generation_config(self) -> DiffusionGenerationConfig:
        # special token ids stored on the model config (e.g. by a training script) carry over, as
        # GenerationConfig.from_model_config does for autoregressive models
        special = {k: getattr(self.config, k, None) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}
        return DiffusionGenerationConfig(
            sampler=self.default_sampler, **{k: v for k, v in special.items() if v is not None}
        )

    def adjust_generation_fn(
        self, generation_config, from_auto_class, from_pipeline, pretrained_model_name_or_path, *args, **kwargs
    ):
        """Called by ``from_pretrained``: load ``generation_config.json`` into our config class. A
        missing file gives the defaults; a file that does not load or holds invalid values raises,
        naming it."""
        if generation_config is not None:
            self.generation_config = self.generation_config_class.from_dict(generation_config.to_dict())
            return
        if pretrained_model_name_or_path is None:  # from_pretrained(None, config=..., state_dict=...)
            self.generation_config = self._default_generation_config()
            return
        keep = {
            k: kwargs[k]
            for k in ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
            if k in kwargs
        }
        name = "/".join(str(p) for p in (pretrained_model_name_or_path, keep.get("subfolder")) if p)
        name += "/" + GENERATION_CONFIG_NAME
        try:
            gc = self.generation_config_class.from_pretrained(pretrained_model_name_or_path, **keep)
        except (OSError, ValueError) as error:
            found = cached_file(
                pretrained_model_name_or_path,
                GENERATION_CONFIG_NAME,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
                **keep,
            )
            if found is not None:  # there, but it does not load
                raise ValueError(f"{name} is not a valid generation config: {error}") from None
            gc = self._default_generation_config()
        if gc.sampler is None:
            gc.sampler = self.default_sampler
        try:
            self._check_generation_config(gc)
        except ValueError as error:
            raise ValueError(f"{name} is not a valid generation config: {error}") from None
        self.generation_config = gc

    def _check_generation_config(self, gc: DiffusionGenerationConfig) -> None:
        """Every check of ``gc`` that needs no input: its values, then what this model can do with them."""
        check_generation_config(gc)
        self._check_block_and_stopping_options(gc)
        if (uses_filters(gc) or gc.do_sample is False) and not (
            self.graph.absorbing and self.model_output_kind in ("log_probs", "log_score")
        ):
            used = [f"{k}={getattr(gc, k)!r}" for k in ("temperature", "top_k", "top_p") if getattr(gc, k) is not None]
            used += ["do_sample=False"] if gc.do_sample is False else []
            raise ValueError(
                f"{', '.join(used)}: temperature / top_k / top_p and greedy decoding need a distribution over clean "
                f"tokens, which {type(self).__name__} on the {self.config.graph} graph does not output"
            )

    def _prepare_generation_config(self, generation_config, kwargs):
        base = generation_config if generation_config is not None else getattr(self, "generation_config", None)
        if not isinstance(base, DiffusionGenerationConfig):
            base = (
                self._default_generation_config()
                if base is None
                else DiffusionGenerationConfig.from_dict(base.to_dict())
            )
        gc = DiffusionGenerationConfig.from_dict(base.to_dict())
        unused = gc.update(**kwargs)
        if unused:
            raise ValueError(f"generate got unknown arguments {sorted(unused)}")
        if gc.sampler is None:
            gc.sampler = self.default_sampler
        self._check_generation_config(gc)
        warn_about_long_runs(gc)
        if gc.do_sample is False and not self._greedy_proposals(gc):
            gc.top_k = 1  # greedy: every revealed token is the argmax of p_theta(x0 | x_t)
        return gc

    def _build_canvas(self, input_ids, attention_mask, infill_mask, gc, device, generator):
        """Returns (x, fixed, attention_mask): the initial state, the positions that never change."""
        graph = self.graph  # input_ids: checked by generate (_check_ids) before its rows are repeated
        if infill_mask is not None:
            if input_ids is None or infill_mask.shape != input_ids.shape:
                raise ValueError("infill_mask needs input_ids of the same shape (True marks positions to generate)")
            fixed = ~infill_mask.bool()
            if graph.mask_token_id is not None and ((input_ids == graph.mask_token_id) & fixed).any():
                raise ValueError("input_ids holds the mask token at a position infill_mask keeps fixed")
            if gc.max_new_tokens is not None or gc.max_length not in (None, input_ids.shape[1]):
                raise ValueError(
                    "with infill_mask the length is that of input_ids: do not pass max_new_tokens or another max_length"
                )
            x = torch.where(fixed, input_ids, graph.sample_prior(input_ids.shape, device, generator))
            return x, fixed, attention_mask
        if input_ids is None:
            if attention_mask is not None:
                raise ValueError("attention_mask describes the prompt's padding: pass it with input_ids")
            batch, prompt_len = gc.num_return_sequences or 1, 0
        else:
            if graph.mask_token_id is not None and (input_ids == graph.mask_token_id).any():
                raise ValueError(f"the prompt input_ids must not contain the mask token id {graph.mask_token_id}")
            batch, prompt_len = input_ids.shape
        if gc.max_new_tokens is not None:
            length = prompt_len + gc.max_new_tokens
        elif gc.max_length is not None:
            length = gc.max_length
        else:  # neither given: the model's training length
            length = self.config.max_position_embeddings
        if length is None or length < 1:
            raise ValueError(f"max_length must be a positive integer, got {length}")
        if prompt_len >= length:
            raise ValueError(f"the prompt ({prompt_len} tokens) must be shorter than max_length ({length})")
        x = graph.sample_prior((batch, length), device, generator)
        fixed = torch.zeros(batch, length, dtype=torch.bool, device=device)
        if input_ids is not None:
            x[:, :prompt_len] = input_ids
            fixed[:, :prompt_len] = True
            if attention_mask is not None:
                if attention_mask.shape != input_ids.shape:
                    raise ValueError(f"attention_mask must have the prompt's shape {tuple(input_ids.shape)}")
                ones = torch.ones(batch, length - prompt_len, dtype=attention_mask.dtype, device=device)
                attention_mask = torch.cat([attention_mask, ones], dim=1)
        return x, fixed, attention_mask

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
        r"""Generate token ids by denoising from the prior (all-mask, or uniform noise).

        - unconditional: `generate(max_length=L, num_return_sequences=N)`;
        - prompted: `generate(input_ids=prompt, max_new_tokens=N)` (or `max_length`); a left-padded
          batch passes `attention_mask`: padding is kept and never attended to;
        - infilling: `generate(input_ids=ids, infill_mask=m)`, `m` True where tokens are generated.

        Other arguments: any `DiffusionGenerationConfig` field as a keyword (`num_inference_steps`,
        `sampler`, `sampler_kwargs`, `temperature`, `top_k`, `top_p`, ...); `generator` or `seed`
        for reproducibility; `callback(step, t, x)` after every step; a `transformers` streamer
        (its `put_draft` sees every intermediate canvas when it has one); `progress_bar`.
        Returns the ids [B, L], or a `DiffusionGenerateOutput` with `return_dict_in_generate=True`.
        `uniform_noise_fn(shape)`, for tests, supplies the uniform draws of every categorical sample.
        transformers' `logits_processor` (a `LogitsProcessorList`) processes the distribution over
        clean tokens at each masked position (`input_ids` = the current canvas, `scores` = log
        p(x0 | x_t)); `stopping_criteria` (a `StoppingCriteriaList`) is called on the canvas and
        the model output after every step, and the loop stops once every row is done.
        A first-hitting sampler (`sampler="first_hitting"`) reveals one token per network call.
        """
        gc = self._prepare_generation_config(generation_config, kwargs)
        check_logits_processing(self, logits_processor, stopping_criteria)
        steps = gc.num_inference_steps
        device = self.device
        generator = resolve_generator(generator, seed, device)
        if input_ids is not None:
            self._check_ids(input_ids, "input_ids")
            input_ids, attention_mask, infill_mask = repeat_rows(
                gc.num_return_sequences, input_ids.to(device), attention_mask, infill_mask
            )
        x, fixed, attention_mask = self._build_canvas(input_ids, attention_mask, infill_mask, gc, device, generator)
        fixed_ids = x.clone()
        # the transformers streamer contract (TextStreamer, TextDiffusionStreamer): the prompt first,
        # then drafts and the final tokens of the generated part (the whole canvas when infilling)
        prompt_len = input_ids.shape[1] if input_ids is not None and infill_mask is None else 0
        if streamer is not None:
            streamer.put(x[:, :prompt_len].cpu())

        sampler = self._semi_autoregressive(build_sampler(self, gc), gc, prompt_len, x.shape[1])
        timesteps = sampler.set_timesteps(steps, gc.t_min, device)
        criteria = prepare_stopping_criteria(gc, self.graph.mask_token_id)
        finished, free = torch.zeros(x.shape[0], dtype=torch.bool, device=device), ~fixed

        def report(i, t, x):
            self._report(i, t, x, callback, streamer, trajectory if output_trajectory else None, prompt_len)

        batch = x.shape[0]
        # use_cache is None unless set (transformers v5 leaves unset fields None): None means on
        reuse_ok = gc.use_cache is not False and not self.config.time_conditioning
        noise = (lambda shape: uniform_noise_fn(shape)) if uniform_noise_fn is not None else (lambda shape: None)

        def model_output(x, t):
            out = self(input_ids=x, attention_mask=attention_mask, timesteps=t.expand(batch)).logits
            out = filter_model_output(out, self.model_output_kind, x, self.graph, gc)
            masked = x == self.graph.mask_token_id if self.graph.absorbing else None
            return process_model_output(
                out, self.model_output_kind, masked, x, logits_processor, self.graph.mask_token_id
            )

        nfe, cached, trajectory, saved = 0, None, [], 0
        if sampler.first_hitting:  # no grid: one network call per revealed token
            x, nfe = first_hitting_loop(
                self.graph.mask_token_id, sampler, x, model_output, generator, noise, stopping_criteria, report
            )
            steps, timesteps = 0, timesteps[-1:]
        iterator = range(steps)
        if progress_bar:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="denoising", total=steps)
        for i in iterator:
            t, s = timesteps[i], timesteps[i + 1]
            if cached is None or not reuse_ok:
                cached = model_output(x, t)
                nfe += 1
            vocab_out = cached.shape[-1]
            out = sampler.step(cached, x, t.expand(batch), s.expand(batch), generator, noise((*x.shape, vocab_out)))
            x_new = torch.where(fixed, fixed_ids, out.prev_sample)
            used = cached
            if not torch.equal(x_new, x):
                cached = None
            x = x_new
            if criteria is not None:
                x, finished, fixed, fixed_ids = self._stop_rows(criteria, x, used, finished, free, fixed, fixed_ids)
            report(i, t, x)
            if criteria is not None and bool(finished.all()):  # every row has its argmax canvas: done
                saved = steps - 1 - i + int(bool(gc.noise_removal))
                break
            if should_stop(stopping_criteria, x, cached):
                break
        adaptive_done = criteria is not None and bool(finished.all())
        if (
            gc.noise_removal
            and not adaptive_done
            and (not sampler.first_hitting or (x == self.graph.mask_token_id).any())
        ):
            t = timesteps[-1]
            if cached is None or not reuse_ok:
                cached = model_output(x, t)
                nfe += 1
            vocab_out = cached.shape[-1] - int(self.graph.absorbing and sampler.needs == "log_score")
            out = sampler.denoise(cached, x, t.expand(batch), generator, noise((*x.shape, vocab_out)))
            x = torch.where(fixed, fixed_ids, out.prev_sample)
            report(steps, t, x)
        if streamer is not None:
            streamer.put(x[:, prompt_len:].cpu())
            streamer.end()
        self.last_num_function_evaluations = nfe
        if return_dict_in_generate:
            return DiffusionGenerateOutput(
                sequences=x,
                num_function_evaluations=nfe,
                trajectory=trajectory if output_trajectory else None,
                num_function_evaluations_saved=saved if criteria is not None else None,
            )
        return x

    # --- semi-autoregressive blocks and adaptive stopping (generation.stopping) ---------------------
    def _check_block_and_stopping_options(self, gc: DiffusionGenerationConfig) -> None:
        """``block_length`` and the adaptive stop's thresholds: their values, and that the model can use them."""
        if gc.block_length is not None:
            check_block_length(gc.block_length)
            if getattr(self.config, "block_size", None) is not None:
                raise ValueError(
                    f"block_length is the semi-autoregressive option of the full-sequence loop; {type(self).__name__} "
                    f"decodes in its own blocks of config.block_size={self.config.block_size}: remove block_length"
                )
        if (gc.stability_threshold, gc.confidence_threshold) != (None, None):
            prepare_stopping_criteria(gc, self.graph.mask_token_id)  # checks the values, naming them
            if getattr(self.config, "block_size", None) is not None:
                raise ValueError(
                    "stability_threshold / confidence_threshold (adaptive stopping) are options of the full-sequence "
                    f"loop; {type(self).__name__} decodes block by block and stops at eos_token_id"
                )
            if not (self.graph.absorbing and self.model_output_kind in ("log_probs", "log_score")):
                raise ValueError(
                    "stability_threshold / confidence_threshold (adaptive stopping) read p_theta(x0 | x_t) on a masked "
                    f"canvas, which {type(self).__name__} on the {self.config.graph} graph does not output"
                )

    @staticmethod
    def _greedy_proposals(gc: DiffusionGenerationConfig) -> bool:
        """do_sample=False with a confidence sampler: its argmax proposals (``deterministic=True``)
        rather than top_k=1, which would leave every position the confidence 1 and so no ranking."""
        cls = SAMPLERS.get(SAMPLER_ALIASES.get(gc.sampler, (gc.sampler,))[0])
        if cls is None or not issubclass(cls, ConfidenceSampler):
            return False
        if gc.sampler_kwargs.get("deterministic", True) is not True:
            raise ValueError(
                f"do_sample=False is greedy decoding, sampler_kwargs deterministic={gc.sampler_kwargs['deterministic']!r} "
                "draws the proposals: pass one of them"
            )
        gc.sampler_kwargs = {**gc.sampler_kwargs, "deterministic": True}
        return True

    def _semi_autoregressive(self, sampler, gc, start: int, length: int):
        """``sampler`` run in blocks of ``gc.block_length`` over positions [start, length) (LLaDA), or as is."""
        if gc.block_length is None:
            return sampler
        return SemiAutoregressiveSampler(sampler, gc.block_length, start, length)

    def _stop_rows(self, criteria, x, output, finished, free, fixed, fixed_ids):
        """Rows the criteria finish after a step take their argmax canvas and are frozen (written back
        after every later step, as a prompt is)."""
        mask = self.graph.mask_token_id
        scores = clean_log_probs(output, self.model_output_kind, mask)
        x, finished, newly = stop_finished_rows(criteria, x, scores, finished, mask, free)
        if newly.any():
            fixed = fixed | newly[:, None]
            fixed_ids = torch.where(newly[:, None], x, fixed_ids)
        return x, finished, fixed, fixed_ids

    @staticmethod
    def _report(step, t, x, callback, streamer, trajectory, draft_start=0):
        if trajectory is not None:
            trajectory.append(x.clone())
        if callback is not None:
            callback(step, float(t), x)
        if streamer is not None and hasattr(streamer, "put_draft"):
            streamer.put_draft(x[:, draft_start:].cpu().clone())  # a copy: block decoding writes x in place


__all__ = ["DiffusionGenerateOutput", "DiffusionGenerationMixin"]
