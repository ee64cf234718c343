"""Pictures of a generation's denoising trajectory.

Every token is coloured by the step at which it was *decided*: the first step after which it never
changes again (for the absorbing graph, the step that unmasked it). Early decisions are dark
purple, late ones yellow; masked positions are grey boxes; given tokens (a prompt, the fixed part
of an infilling pattern) are black on white.

    out = model.generate(..., return_dict_in_generate=True, output_trajectory=True)
    save_trajectory("denoising.png", out.trajectory, tokenizer, mask_token_id=model.config.mask_token_id)
    save_trajectory("denoising.gif", ...)    # animated, one frame per step
    save_trajectory("denoising.html", ...)   # a self-contained page with a step slider

PNG and GIF need Pillow (``pip install pillow``); the HTML page needs nothing.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

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


class _Pieces:
    """Token id -> display text, cached."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self.cache:
            text = str(token_id) if self.tokenizer is None else self.tokenizer.decode([token_id])
            self.cache[token_id] = text.replace("\n", "\\n").replace("\t", "\\t") or "\u00b7"
        return self.cache[token_id]


def _frames_to_show(num_steps: int, max_frames: int) -> list[int]:
    if max_frames < 2 or num_steps <= max_frames:
        return list(range(num_steps))
    picks = {round(i * (num_steps - 1) / (max_frames - 1)) for i in range(max_frames)}
    return sorted(picks)


def _prepare(trajectory, fixed, prompt_length, row):
    steps = _stack(trajectory)
    if not 0 <= row < steps.shape[1]:
        raise ValueError(f"row must be in [0, {steps.shape[1]}), got {row}")
    fixed_mask = _fixed_mask(steps, fixed, prompt_length)
    decided = decision_steps(steps, fixed_mask)
    return steps[:, row], decided[row], fixed_mask[row]


# --- Pillow renderings ----------------------------------------------------------------------
def _font(size: int):
    from PIL import ImageFont

    for name in ("DejaVuSansMono.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _layout(pieces: list[str], font, width: int, pad: int, line_height: int):
    """(x, y, w) of every token box, wrapping at ``width``; returns boxes and the total height."""
    boxes, x, y = [], pad, pad
    for piece in pieces:
        w = max(int(font.getlength(piece)) + 4, 8)
        if x + w > width - pad and x > pad:
            x, y = pad, y + line_height
        boxes.append((x, y, w))
        x += w + 1
    return boxes, y + line_height + pad


def _render_frame(canvas, decided, fixed, num_steps, step, pieces, font, width, label, mask_token_id):
    from PIL import Image, ImageDraw

    size = font.size if hasattr(font, "size") else 14
    line_height = size + 8
    tokens = canvas.tolist()
    masked = [mask_token_id is not None and t == mask_token_id for t in tokens]
    # a masked position is a fixed-width grey box; other tokens are their decoded text
    shown = ["_" * 4 if m else pieces(t) for t, m in zip(tokens, masked)]
    boxes, height = _layout(shown, font, width, 6, line_height)
    header = line_height
    image = Image.new("RGB", (width, height + header), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((6, 4), label, font=font, fill=(60, 60, 60))
    for j, (x, y, w) in enumerate(boxes):
        y += header
        box = (x, y + 1, x + w - 1, y + line_height - 3)
        if masked[j]:
            draw.rectangle(box, fill=_MASK_FILL)
            continue
        if fixed[j]:
            fill, outline = _FIXED_FILL, (190, 190, 190)
        elif step < decided[j]:  # not final yet (uniform-graph noise): grey text
            fill, outline = _BACKGROUND, (215, 215, 215)
        else:
            fill, outline = step_colour(decided[j] / max(1, num_steps - 1)), None
        draw.rectangle(box, fill=fill, outline=outline)
        colour = (150, 150, 150) if (not fixed[j] and step < decided[j]) else _text_colour(fill)
        draw.text((x + 2, y + 3), shown[j], font=font, fill=colour)
    return image


def _legend(width: int, font, num_steps: int):
    from PIL import Image, ImageDraw

    size = font.size if hasattr(font, "size") else 14
    image = Image.new("RGB", (width, size + 16), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((6, 6), "decided at step 1", font=font, fill=(60, 60, 60))
    start = 6 + int(font.getlength("decided at step 1")) + 8
    bar = max(60, width - start - int(font.getlength(f"{num_steps}")) - 20)
    for i in range(bar):
        draw.line((start + i, 6, start + i, size + 8), fill=step_colour(i / max(1, bar - 1)))
    draw.text((start + bar + 6, 6), f"{num_steps}", font=font, fill=(60, 60, 60))
    return image


def _labels(num_steps, timesteps):
    out = []
    for k in range(num_steps):
        label = f"step {k + 1}/{num_steps}"
        if timesteps is not None and k < len(timesteps):
            label += f"   t = {float(timesteps[k]):.3f}"
        out.append(label)
    return out


def _require_pillow():
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise ImportError("PNG and GIF pictures need Pillow: pip install pillow (or save as .html)") from None


def trajectory_frames(
    trajectory,
    tokenizer=None,
    mask_token_id=None,
    fixed=None,
    prompt_length=None,
    row=0,
    width=960,
    font_size=14,
    timesteps=None,
):
    """One Pillow image per step of ``trajectory`` (row ``row`` of the batch)."""
    _require_pillow()
    steps, decided, fixed_row = _prepare(trajectory, fixed, prompt_length, row)
    font = _font(font_size)
    pieces = _Pieces(tokenizer)
    labels = _labels(steps.shape[0], timesteps)
    return [
        _render_frame(steps[k], decided, fixed_row, steps.shape[0], k, pieces, font, width, labels[k], mask_token_id)
        for k in range(steps.shape[0])
    ]


def save_trajectory_png(
    path,
    trajectory,
    tokenizer=None,
    mask_token_id=None,
    fixed=None,
    prompt_length=None,
    row=0,
    max_frames=8,
    width=960,
    font_size=14,
    timesteps=None,
):
    """An image strip: up to ``max_frames`` steps (evenly spaced, the last included) stacked
    top to bottom, and a colour legend."""
    _require_pillow()
    from PIL import Image

    steps = _stack(trajectory)
    frames = trajectory_frames(steps, tokenizer, mask_token_id, fixed, prompt_length, row, width, font_size, timesteps)
    chosen = [frames[k] for k in _frames_to_show(len(frames), max_frames)]
    legend = _legend(width, _font(font_size), len(frames))
    height = sum(f.height for f in chosen) + legend.height + 2 * len(chosen)
    strip = Image.new("RGB", (width, height), (225, 225, 225))
    y = 0
    for frame in chosen:
        strip.paste(frame, (0, y))
        y += frame.height + 2
    strip.paste(legend, (0, y))
    strip.save(path, format="PNG")
    return Path(path)


def save_trajectory_gif(
    path,
    trajectory,
    tokenizer=None,
    mask_token_id=None,
    fixed=None,
    prompt_length=None,
    row=0,
    max_frames=64,
    width=960,
    font_size=14,
    timesteps=None,
    duration_ms=120,
):
    """An animated GIF, one frame per step (at most ``max_frames``); the last frame is held."""
    _require_pillow()
    from PIL import Image

    steps = _stack(trajectory)
    frames = trajectory_frames(steps, tokenizer, mask_token_id, fixed, prompt_length, row, width, font_size, timesteps)
    chosen = [frames[k] for k in _frames_to_show(len(frames), max_frames)]
    height = max(f.height for f in chosen)
    canvas = []
    for frame in chosen:  # frames wrap to different heights: pad them to one size
        padded = Image.new("RGB", (width, height), _BACKGROUND)
        padded.paste(frame, (0, 0))
        canvas.append(padded.convert("P", palette=Image.Palette.ADAPTIVE, colors=255))
    durations = [duration_ms] * (len(canvas) - 1) + [max(duration_ms, 2000)]
    canvas[0].save(path, format="GIF", save_all=True, append_images=canvas[1:], duration=durations, loop=0)
    return Path(path)


# --- HTML -----------------------------------------------------------------------------------
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: ui-monospace, "DejaVu Sans Mono", monospace; background: #fafafa; margin: 2em; }}
#canvas {{ line-height: 2; white-space: pre-wrap; word-break: break-all; max-width: 70em; }}
#canvas span {{ padding: 1px 0; border-radius: 2px; }}
.mask {{ background: #d7d7d7; color: #d7d7d7; }}
.fixed {{ background: #fff; outline: 1px solid #bbb; }}
.undecided {{ color: #999; outline: 1px dotted #ccc; }}
#legend {{ display: inline-block; width: 20em; height: 0.8em; vertical-align: middle;
  background: linear-gradient(to right, {gradient}); }}
</style></head><body>
<h3>{title}</h3>
<p><button id="play">play</button> <input id="step" type="range" min="0" max="{last}" value="{last}">
<span id="label"></span></p>
<p>decided at step 1 <span id="legend"></span> {num_steps}</p>
<div id="canvas"></div>
<script>
const DATA = {data};
const canvas = document.getElementById("canvas");
const slider = document.getElementById("step"), label = document.getElementById("label");
function colour(f) {{
  const s = DATA.scale, p = Math.min(Math.max(f, 0), 1) * (s.length - 1), i = Math.min(Math.floor(p), s.length - 2), w = p - i;
  const c = s[i].map((a, k) => Math.round(a + (s[i + 1][k] - a) * w));
  return [c, 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 140 ? "#000" : "#fff"];
}}
function show(k) {{
  canvas.textContent = "";
  const n = DATA.steps.length;
  DATA.steps[k].forEach((tok, j) => {{
    const span = document.createElement("span");
    const d = DATA.decided[j];
    if (d < 0) {{ span.className = "fixed"; span.textContent = DATA.pieces[tok]; }}
    else if (tok === DATA.mask) {{ span.className = "mask"; span.textContent = "\\u2591\\u2591"; }}
    else if (k < d) {{ span.className = "undecided"; span.textContent = DATA.pieces[tok]; }}
    else {{ const [c, fg] = colour(d / Math.max(1, n - 1)); span.style.background = `rgb(${{c}})`; span.style.color = fg;
           span.textContent = DATA.pieces[tok]; span.title = `decided at step ${{d + 1}}`; }}
    canvas.appendChild(span);
  }});
  label.textContent = `step ${{k + 1}} / ${{n}}` + (DATA.t ? `   t = ${{DATA.t[k].toFixed(3)}}` : "");
}}
slider.oninput = () => show(+slider.value);
let timer = null;
document.getElementById("play").onclick = () => {{
  if (timer) {{ clearInterval(timer); timer = null; return; }}
  let k = 0;
  timer = setInterval(() => {{
    slider.value = k; show(k);
    if (++k >= DATA.steps.length) {{ clearInterval(timer); timer = null; }}
  }}, 150);
}};
show(+slider.value);
</script></body></html>
"""


def save_trajectory_html(
    path,
    trajectory,
    tokenizer=None,
    mask_token_id=None,
    fixed=None,
    prompt_length=None,
    row=0,
    timesteps=None,
    title="Denoising trajectory",
):
    """A self-contained HTML page (no external resources) with a step slider and a play button."""
    steps, decided, _ = _prepare(trajectory, fixed, prompt_length, row)  # decided is -1 where fixed
    pieces = _Pieces(tokenizer)
    vocab = sorted(set(steps.flatten().tolist()))
    data = {
        "steps": steps.tolist(),
        "decided": decided.tolist(),
        "pieces": {int(i): pieces(int(i)) for i in vocab},
        "scale": [list(c) for c in _SCALE],
        "mask": mask_token_id,
        "t": None if timesteps is None else [float(t) for t in timesteps][: steps.shape[0]],
    }
    gradient = ", ".join(f"rgb{c}" for c in _SCALE)
    page = _PAGE.format(
        title=html.escape(title),
        gradient=gradient,
        last=steps.shape[0] - 1,
        num_steps=steps.shape[0],
        # json in a <script>: escape "</" so token text cannot close the tag
        data=json.dumps(data).replace("</", "<\\/"),
    )
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


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
]
