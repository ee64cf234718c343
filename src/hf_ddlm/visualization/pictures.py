"""PNG strips, GIF animations and single frames of a denoising trajectory, drawn with Pillow
(``pip install pillow``): every token is a box coloured by the step that decided it."""

from __future__ import annotations

from pathlib import Path

from ..export.atomic import atomic_path
from .trajectory import _BACKGROUND, _FIXED_FILL, _MASK_FILL, _Pieces, _prepare, _stack, _text_colour, step_colour


def _frames_to_show(num_steps: int, max_frames: int) -> list[int]:
    if max_frames < 2 or num_steps <= max_frames:
        return list(range(num_steps))
    picks = {round(i * (num_steps - 1) / (max_frames - 1)) for i in range(max_frames)}
    return sorted(picks)


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
    with atomic_path(path) as tmp:  # a temporary file renamed over ``path``: never a half picture
        strip.save(tmp, format="PNG")
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
    with atomic_path(path) as tmp:
        canvas[0].save(tmp, format="GIF", save_all=True, append_images=canvas[1:], duration=durations, loop=0)
    return Path(path)


__all__ = ["save_trajectory_gif", "save_trajectory_png", "trajectory_frames"]
