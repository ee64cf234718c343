"""The set-up both generation loops share (whole-sequence denoising in ``mixin``, block decoding in
``block_decoding``): the checks of a generation config, the random generator, the
``num_return_sequences`` copies, the sampler and its checks, and the temperature / top-k / top-p
filter on the model's output."""

from __future__ import annotations

import numbers
import warnings

import torch

from ..categorical import filter_logits
from ..samplers import SAMPLER_ALIASES, SAMPLERS, Sampler, get_sampler
from .configuration import DiffusionGenerationConfig

# num_inference_steps above this is refused (at one network call per step a small model would run for
# days, and the time grid alone would take num_inference_steps * 4 bytes); above MANY it warns
MAX_INFERENCE_STEPS = 1_000_000
MANY_INFERENCE_STEPS = 100_000

# transformers' options of left-to-right decoding that iterative denoising has no counterpart for,
# with their neutral values (which a generation_config.json may carry): generate refuses any other
# value rather than ignore it. (do_sample=False has one: greedy decoding, see check_generation_config.)
AUTOREGRESSIVE_ONLY = {
    # length and stopping: a canvas has its length before denoising starts
    "min_length": 0,
    "min_new_tokens": 0,
    "max_time": None,
    "stop_strings": None,
    "early_stopping": False,
    # search over left-to-right prefixes
    "num_beams": 1,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "length_penalty": 1.0,
    "penalty_alpha": None,
    "dola_layers": None,
    "constraints": None,
    "force_words_ids": None,
    # logits processors that read the tokens generated so far, or the next position
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "sequence_bias": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "remove_invalid_values": False,
    "guidance_scale": 1.0,
    "watermarking_config": None,
    "token_healing": False,
    # truncation samplers hf_ddlm does not implement (it has temperature, top_k and top_p)
    "min_p": None,
    "top_h": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    # per-token scores of left-to-right steps
    "output_scores": False,
    "output_logits": False,
}


def _positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def check_generation_config(gc: DiffusionGenerationConfig) -> None:
    """The checks of ``gc``'s values that do not depend on the model, each naming its field."""
    # transformers v5 leaves unset fields None; check the ones generate reads
    for name in ("num_return_sequences", "max_length", "max_new_tokens"):
        value = getattr(gc, name)
        if value is not None and not _positive_int(value):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    steps = gc.num_inference_steps
    if not _positive_int(steps):
        raise ValueError(f"num_inference_steps must be a positive integer, got {steps!r}")
    if steps > MAX_INFERENCE_STEPS:
        raise ValueError(
            f"num_inference_steps must be at most {MAX_INFERENCE_STEPS} (got {steps}): each step is a network call, "
            "so this would run for days, and its time grid alone takes num_inference_steps * 4 bytes "
            "(the papers use up to about 10^4)"
        )
    if gc.temperature is not None and not (isinstance(gc.temperature, numbers.Real) and gc.temperature > 0):
        raise ValueError(f"temperature must be > 0, got {gc.temperature!r}")
    if gc.top_k is not None and not (_positive_int(gc.top_k) or gc.top_k == 0):
        raise ValueError(f"top_k must be a non-negative integer (0 or None: no top-k), got {gc.top_k!r}")
    if gc.top_p is not None and not (isinstance(gc.top_p, numbers.Real) and 0 < gc.top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {gc.top_p!r}")
    if gc.do_sample not in (None, True, False):  # None: unset, sampling
        raise ValueError(f"do_sample must be True or False, got {gc.do_sample!r}")
    if gc.do_sample is False and uses_filters(gc):
        raise ValueError(
            "do_sample=False is greedy decoding (the most likely clean token at every revealed position): "
            "it takes no temperature / top_k / top_p"
        )
    set_options = {
        name: getattr(gc, name)
        for name, neutral in AUTOREGRESSIVE_ONLY.items()
        if getattr(gc, name, None) is not None and getattr(gc, name) != neutral
    }
    if set_options:
        listed = ", ".join(f"{name}={value!r}" for name, value in set_options.items())
        raise ValueError(
            f"{listed}: {'an option' if len(set_options) == 1 else 'options'} of autoregressive (left-to-right) "
            "decoding, which iterative denoising has no counterpart for; remove "
            f"{'it' if len(set_options) == 1 else 'them'} (diffusion generate takes temperature, top_k, top_p, "
            "do_sample=False for greedy decoding, num_inference_steps and a sampler)"
        )


def uses_filters(gc: DiffusionGenerationConfig) -> bool:
    """Whether ``gc`` changes the model's distribution over clean tokens (temperature, top-k, top-p)."""
    return (
        (gc.temperature is not None and gc.temperature != 1.0)
        or bool(gc.top_k)
        or (gc.top_p is not None and gc.top_p < 1.0)
    )


def warn_about_long_runs(gc: DiffusionGenerationConfig) -> None:
    if gc.num_inference_steps > MANY_INFERENCE_STEPS:
        warnings.warn(
            f"num_inference_steps={gc.num_inference_steps} makes up to that many network calls per canvas (per block "
            "for block diffusion): expect a long run; the papers use up to about 10^4 steps",
            UserWarning,
            stacklevel=4,
        )


def resolve_generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device
) -> torch.Generator | None:
    """``generator``, or a new one on ``device`` seeded with ``seed``."""
    if seed is None:
        return generator
    if generator is not None:
        raise ValueError("pass either generator or seed, not both")
    return torch.Generator(device=device).manual_seed(seed)


def repeat_rows(copies: int | None, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """Each [B, ...] tensor (None passes through) with every row repeated ``copies`` times (row b
    becomes rows b * copies ... b * copies + copies - 1): ``num_return_sequences`` per prompt."""
    if not copies or copies <= 1:
        return tensors
    return tuple(None if x is None else x.repeat_interleave(copies, dim=0) for x in tensors)


def reads_kind(sampler_class, kind: str) -> bool:
    """Whether a sampler consumes a model output of this kind: its ``needs``, or one of the kinds it
    converts (``reads``, e.g. the confidence samplers read SEDD's log score through its p0)."""
    return kind == sampler_class.needs or kind in getattr(sampler_class, "reads", ())


def applicable_samplers(model_or_class, graph=None, schedule=None) -> list[str]:
    """The registered sampler names (aliases included) that apply to a model: those that read the
    model's ``model_output_kind`` and whose constructor accepts its graph and noise schedule with
    their default arguments (each sampler checks what it needs, e.g. an absorbing graph, a
    log-linear schedule). Pass a model, or a model class with the ``graph`` and ``schedule``."""
    kind = model_or_class.model_output_kind
    graph = graph if graph is not None else model_or_class.graph
    schedule = schedule if schedule is not None else getattr(model_or_class, "schedule", None)
    names = []
    for name in sorted([*SAMPLERS, *SAMPLER_ALIASES]):
        target = SAMPLER_ALIASES[name][0] if name in SAMPLER_ALIASES else name
        # a discrete-time schedule (D3PM, its num_timesteps) and a continuous-time sampler do not mix
        discrete = getattr(schedule, "num_timesteps", None) is not None
        if not reads_kind(SAMPLERS[target], kind) or getattr(SAMPLERS[target], "discrete_time", False) != discrete:
            continue
        try:
            get_sampler(name, graph, schedule)
        except (ValueError, TypeError, AttributeError):
            continue
        names.append(name)
    return names


def build_sampler(model, gc: DiffusionGenerationConfig) -> Sampler:
    """The sampler ``gc.sampler`` with ``gc.sampler_kwargs``, checked against the model before the
    loop: an inapplicable sampler is refused with the list of those that apply."""
    target = SAMPLER_ALIASES[gc.sampler][0] if gc.sampler in SAMPLER_ALIASES else gc.sampler
    if target in SAMPLERS and not reads_kind(SAMPLERS[target], model.model_output_kind):
        raise ValueError(
            f"sampler {gc.sampler!r} reads {SAMPLERS[target].needs!r} but {type(model).__name__} outputs "
            f"{model.model_output_kind!r}; the samplers that apply to it are {applicable_samplers(model)}"
        )
    discrete = getattr(model.schedule, "num_timesteps", None) is not None
    if target in SAMPLERS and getattr(SAMPLERS[target], "discrete_time", False) != discrete:
        raise ValueError(
            f"sampler {gc.sampler!r} steps in {'discrete' if not discrete else 'continuous'} time but "
            f"{type(model).__name__} has a {'discrete' if discrete else 'continuous'}-time schedule; "
            f"the samplers that apply to it are {applicable_samplers(model)}"
        )
    try:
        sampler = get_sampler(gc.sampler, model.graph, model.schedule, **gc.sampler_kwargs)
    except TypeError as error:  # an argument the sampler's constructor does not take
        raise ValueError(f"sampler_kwargs {gc.sampler_kwargs} do not fit sampler {gc.sampler!r}: {error}") from None
    except ValueError as error:
        applicable = applicable_samplers(model)
        if target in SAMPLERS and gc.sampler not in applicable:  # the model's graph / schedule, not a kwarg
            raise ValueError(
                f"sampler {gc.sampler!r} does not apply to {type(model).__name__} ({error}); "
                f"the samplers that apply to it are {applicable}"
            ) from None
        raise
    if sampler.needs != model.model_output_kind and model.model_output_kind in getattr(sampler, "reads", ()):
        sampler.needs = model.model_output_kind  # a sampler that reads several kinds converts the model's own
    if sampler.needs != model.model_output_kind:
        raise ValueError(
            f"sampler {gc.sampler!r} reads {sampler.needs!r} but {type(model).__name__} outputs {model.model_output_kind!r}"
        )
    return sampler


def check_logits_processing(model, logits_processor, stopping_criteria) -> None:
    """transformers' ``logits_processor`` needs a distribution over clean tokens (masked positions
    of an absorbing-graph model that outputs log p(x0 | x_t) or the absorbing log score);
    ``stopping_criteria`` must be callable on (canvas, scores)."""
    if logits_processor is not None:
        if not callable(logits_processor):
            raise ValueError(f"logits_processor must be a transformers LogitsProcessorList, got {logits_processor!r}")
        if len(logits_processor) and not (
            model.graph.absorbing and model.model_output_kind in ("log_probs", "log_score")
        ):
            raise ValueError(
                f"logits_processor needs a distribution over clean tokens at masked positions, which "
                f"{type(model).__name__} on the {model.config.graph} graph does not output"
            )
    if stopping_criteria is not None and not callable(stopping_criteria):
        raise ValueError(f"stopping_criteria must be a transformers StoppingCriteriaList, got {stopping_criteria!r}")


def clean_columns(vocab_size: int, mask_token_id: int | None, device=None) -> torch.LongTensor:
    """The ids of the clean tokens, every id but the mask (``[:-1]`` when the mask is last, as
    usual; LLaDA and Dream keep theirs inside the vocabulary; None: no mask, every id)."""
    ids = torch.arange(vocab_size, device=device)
    return ids if mask_token_id is None else ids[ids != mask_token_id]


def process_model_output(
    output: torch.Tensor,
    kind: str,
    masked: torch.Tensor,
    canvas: torch.LongTensor,
    logits_processor,
    mask_token_id: int | None = None,
) -> torch.Tensor:
    """Apply a transformers ``logits_processor`` to the distribution over clean tokens at the
    ``masked`` positions [B, L] of ``output`` [B, L, V] (the mask is ``mask_token_id``, by default
    the last id). Each masked
    position is one row for the processor: ``input_ids`` = its row of the current ``canvas``,
    ``scores`` = log p(x0 | x_t) there; the result is renormalised (for the absorbing log score,
    rescaled to the score's total, as ``filter_model_output``)."""
    if not logits_processor:
        return output
    rows = masked.nonzero(as_tuple=True)
    if not rows[0].numel():
        return output
    picked = output[rows]
    mask = output.shape[-1] - 1 if mask_token_id is None else mask_token_id
    clean = clean_columns(output.shape[-1], mask, output.device)
    body = picked.index_select(-1, clean).float()
    scores = logits_processor(canvas[rows[0]], body.clone())
    new = scores.float().log_softmax(-1)
    if kind == "log_score":
        new = new + torch.logsumexp(body, dim=-1, keepdim=True)
    output = output.clone()
    output[rows] = picked.index_copy(-1, clean, new.to(output.dtype))
    return output


def should_stop(stopping_criteria, canvas: torch.LongTensor, scores: torch.Tensor | None) -> bool:
    """transformers' stopping criteria on the canvas after a step: True when every row is done."""
    if not stopping_criteria:
        return False
    done = stopping_criteria(canvas, scores)
    return bool(torch.as_tensor(done).all())


def filter_model_output(
    output: torch.Tensor, kind: str, x_t: torch.LongTensor, graph, gc: DiffusionGenerationConfig
) -> torch.Tensor:
    """Apply ``gc``'s temperature / top_k / top_p to the distribution over clean tokens behind the output.

    log_probs (MDLM): at masked positions, filter log p(x0). log_score on the absorbing graph: by
    RADD's theorem the score at a masked position is p0(y) / (e^sigma - 1), so filtering the
    normalised scores over y != mask and restoring their total keeps the reverse rate's scale.
    """
    temperature = 1.0 if gc.temperature is None else gc.temperature
    top_k, top_p = gc.top_k, gc.top_p
    if temperature == 1.0 and not top_k and (top_p is None or top_p >= 1.0):
        return output
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not graph.absorbing:
        raise ValueError(
            "temperature / top_k / top_p need a distribution over clean tokens; the uniform graph has none"
        )
    masked = (x_t == graph.mask_token_id).unsqueeze(-1)
    clean = clean_columns(output.shape[-1], graph.mask_token_id, output.device)
    body = output.index_select(-1, clean)
    filtered = filter_logits(body.float(), temperature, top_k, top_p).log_softmax(-1).to(output.dtype)
    if kind == "log_score":
        filtered = filtered + torch.logsumexp(body, dim=-1, keepdim=True)
    new = output.index_copy(-1, clean, filtered)
    return torch.where(masked, new, output)


def first_hitting_loop(mask_token_id: int, sampler, x, model_output, generator, noise, stopping_criteria, report):
    """First-hitting sampling of the whole canvas (Zheng et al. 2024; ``samplers.first_hitting``):
    each step draws per row the time s = t u^(1/n) of the next reveal and reveals one uniformly
    chosen masked position from p_theta(x0 | x_t) there, so a row with n masked tokens takes n
    network calls and no time grid. Fixed positions are never masked (absorbing graph), so they
    are never chosen. Returns (x, nfe)."""
    t = torch.ones(x.shape[0], device=x.device)
    nfe, i = 0, 0
    while (x == mask_token_id).any():
        s = sampler.next_time(t, x, generator)
        out = model_output(x, t)
        nfe += 1
        x = sampler.step(out, x, t, s, generator, noise((x.shape[0], out.shape[-1]))).prev_sample
        t, i = s, i + 1
        report(i - 1, t[0], x)
        if should_stop(stopping_criteria, x, out):
            break
    return x, nfe


__all__ = [
    "first_hitting_loop",
    "AUTOREGRESSIVE_ONLY",
    "MAX_INFERENCE_STEPS",
    "applicable_samplers",
    "build_sampler",
    "check_generation_config",
    "check_logits_processing",
    "clean_columns",
    "process_model_output",
    "should_stop",
    "filter_model_output",
    "repeat_rows",
    "resolve_generator",
    "uses_filters",
    "warn_about_long_runs",
]
