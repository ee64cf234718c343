"""Pictures of a generation's denoising trajectory.

Every token is coloured by the step at which it was *decided*: the first step after which it never
changes again (for the absorbing graph, the step that unmasked it). Early decisions are dark
purple, late ones yellow; masked positions are grey boxes; given tokens (a prompt, the fixed part
of an infilling pattern) are black on white.

    out = model.generate(..., return_dict_in_generate=True, output_trajectory=True)
    save_trajectory("denoising.png", out.trajectory, tokenizer, mask_token_id=model.config.mask_token_id)
    save_trajectory("denoising.gif", ...)    # animated, one frame per step
    save_trajectory("denoising.html", ...)   # a self-contained page with a step slider

PNG and GIF need Pillow (``pip install pillow``); the HTML page needs nothing. Decision steps and
colours are in :mod:`.trajectory`, the Pillow drawings in :mod:`.pictures`, the page in :mod:`.page`.
"""

from __future__ import annotations

from pathlib import Path

from .page import save_trajectory_html
from .pictures import save_trajectory_gif, save_trajectory_png, trajectory_frames
from .trajectory import decision_steps, step_colour, visible


def save_trajectory(path, trajectory, tokenizer=None, **kwargs):
    """Save ``trajectory`` as ``.png`` (image strip), ``.gif`` (animation) or ``.html`` (page),
    chosen by the file suffix."""
    suffix = Path(path).suffix.lower()
    savers = {
        ".png": save_trajectory_png,
        ".gif": save_trajectory_gif,
        ".html": save_trajectory_html,
        ".htm": save_trajectory_html,
    }
    if suffix not in savers:
        raise ValueError(f"path must end in .png, .gif or .html, got {str(path)!r}")
    return savers[suffix](path, trajectory, tokenizer, **kwargs)


__all__ = [
    "decision_steps",
    "save_trajectory",
    "save_trajectory_gif",
    "save_trajectory_html",
    "save_trajectory_png",
    "step_colour",
    "trajectory_frames",
    "visible",
]
