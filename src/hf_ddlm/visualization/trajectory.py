"""Reading a denoising trajectory: the step at which every token was decided, and its colour.

A token is *decided* at the first step after which it never changes again (for the absorbing graph,
the step that unmasked it). Early decisions are dark purple, late ones yellow, on one linear RGB
scale shared by the pictures (:mod:`.pictures`) and the HTML page (:mod:`.page`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Anchors of the step colour scale (early -> late), interpolated linearly in RGB.
_SCALE = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
_MASK_FILL = (215, 215, 215)
_FIXED_FILL = (255, 255, 255)
_BACKGROUND = (250, 250, 250)


def step_colour(fraction: float) -> tuple[int, int, int]:
    """The colour of a decision at ``fraction`` in [0, 1] of the trajectory."""
    fraction = min(1.0, max(0.0, float(fraction)))
    pos = fraction * (len(_SCALE) - 1)
    i = min(int(pos), len(_SCALE) - 2)
    w = pos - i
    return tuple(round(a + (b - a) * w) for a, b in zip(_SCALE[i], _SCALE[i + 1]))


def _text_colour(fill) -> tuple[int, int, int]:
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _stack(trajectory: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """[T, B, L] from a list of T canvases [B, L] (or [L]), or a tensor [T, B, L] / [T, L]."""
    if isinstance(trajectory, torch.Tensor):
        stacked = trajectory
    else:
        if len(trajectory) == 0:
            raise ValueError(
                "trajectory is empty: pass generate(..., output_trajectory=True, return_dict_in_generate=True).trajectory"
            )
        shapes = {tuple(torch.as_tensor(x).shape) for x in trajectory}
        if len(shapes) != 1:
            raise ValueError(f"trajectory canvases must all have one shape, got {sorted(shapes)}")
        stacked = torch.stack([torch.as_tensor(x) for x in trajectory])
    if stacked.dim() == 2:
        stacked = stacked[:, None]
    if stacked.dim() != 3:
        raise ValueError(f"trajectory must be T canvases of shape [B, L], got a tensor of shape {tuple(stacked.shape)}")
    return stacked.detach().cpu().long()


def decision_steps(trajectory, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """The step at which every token was decided: [B, L] (long), -1 at ``fixed`` positions.

    ``trajectory`` is the canvas after every step (``DiffusionGenerateOutput.trajectory``). The
    decision step of a position is the smallest k such that its token at steps k, k+1, ... equals
    the final one.
    """
    steps = _stack(trajectory)
    same_as_final = steps == steps[-1:]
    # stays[k] is True when the token equals the final one at every step from k on
    stays = same_as_final.flip(0).long().cumprod(0).flip(0)
    decided = steps.shape[0] - stays.sum(0)
    if fixed is not None:
        fixed = torch.as_tensor(fixed).bool().cpu()
        if fixed.dim() == 1 and fixed.shape[0] == decided.shape[1]:
            fixed = fixed[None].expand_as(decided)
        if fixed.shape != decided.shape:
            raise ValueError(f"fixed must have the canvas shape {tuple(decided.shape)}, got {tuple(fixed.shape)}")
        decided = decided.masked_fill(fixed, -1)
    return decided


def _fixed_mask(steps: torch.Tensor, fixed, prompt_length: int | None) -> torch.Tensor:
    b, length = steps.shape[1:]
    mask = torch.zeros(b, length, dtype=torch.bool)
    if prompt_length:
        if not 0 <= prompt_length <= length:
            raise ValueError(f"prompt_length must be in [0, {length}], got {prompt_length}")
        mask[:, :prompt_length] = True
    if fixed is not None:
        fixed = torch.as_tensor(fixed).bool().cpu()
        if fixed.dim() == 1 and fixed.shape[0] == length:
            fixed = fixed[None].expand(b, -1)
        if fixed.shape != (b, length):
            raise ValueError(f"fixed must have the canvas shape {(b, length)}, got {tuple(fixed.shape)}")
        mask |= fixed
    return mask


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def visible(text: str) -> str:
    """``text`` with every control or separator character made visible, so that a token shows as
    what it is and text shaping (Pillow's raqm fails on a line break) never sees one: ``\\n``,
    ``\\t`` and ``\\r`` as escapes, the other C0 controls and DEL as their Unicode control
    pictures (U+2400 + code, U+2421), C1 controls and other non-printable characters (U+2028, ...)
    as ``\\x85`` / ``\\u2028`` escapes; printable text (spaces included) is unchanged."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20:
            out.append(chr(0x2400 + code))
        elif code == 0x7F:
            out.append("\u2421")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(ascii(ch)[1:-1])
    return "".join(out)


class _Pieces:
    """Token id -> display text (control characters made :func:`visible`), cached."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self.cache:
            text = str(token_id) if self.tokenizer is None else self.tokenizer.decode([token_id])
            self.cache[token_id] = visible(text) or "\u00b7"
        return self.cache[token_id]


def _prepare(trajectory, fixed, prompt_length, row):
    steps = _stack(trajectory)
    if not 0 <= row < steps.shape[1]:
        raise ValueError(f"row must be in [0, {steps.shape[1]}), got {row}")
    fixed_mask = _fixed_mask(steps, fixed, prompt_length)
    decided = decision_steps(steps, fixed_mask)
    return steps[:, row], decided[row], fixed_mask[row]


__all__ = ["decision_steps", "step_colour", "visible"]
