"""The set-up both generation loops share (whole-sequence denoising in ``mixin``, block decoding in
``block_decoding``): the random generator, the ``num_return_sequences`` copies, the sampler and its
checks, and the temperature / top-k / top-p filter on the model's output."""

from __future__ import annotations

import torch

from ..categorical import filter_logits
from ..samplers import Sampler, get_sampler
from .configuration import DiffusionGenerationConfig


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


def build_sampler(model, gc: DiffusionGenerationConfig) -> Sampler:
    """The sampler ``gc.sampler`` with ``gc.sampler_kwargs``, checked against the model's output kind."""
    try:
        sampler = get_sampler(gc.sampler, model.graph, model.schedule, **gc.sampler_kwargs)
    except TypeError as error:  # an argument the sampler's constructor does not take
        raise ValueError(f"sampler_kwargs {gc.sampler_kwargs} do not fit sampler {gc.sampler!r}: {error}") from None
    if sampler.needs != model.model_output_kind:
        raise ValueError(
            f"sampler {gc.sampler!r} reads {sampler.needs!r} but {type(model).__name__} outputs {model.model_output_kind!r}"
        )
    return sampler


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
    body = output[..., :-1]
    filtered = filter_logits(body.float(), temperature, top_k, top_p).log_softmax(-1).to(output.dtype)
    if kind == "log_score":
        filtered = filtered + torch.logsumexp(body, dim=-1, keepdim=True)
    new = torch.cat([filtered, output[..., -1:]], dim=-1)
    return torch.where(masked, new, output)


__all__ = ["build_sampler", "filter_model_output", "repeat_rows", "resolve_generator"]
