"""The validation bound against tokens seen, one line per method, drawn with Pillow (no matplotlib)."""

from __future__ import annotations

from ..export.atomic import atomic_path

COLOURS = [(0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207)]  # fmt: skip


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def draw_curves(curves: dict, path, title: str) -> None:
    """``curves``: label -> [(tokens, nats per token), ...]. Methods without points are listed in
    the legend as having no bound. The y range covers the other curves when one ends far above
    them (more than twice their median end): its points are drawn at the top edge, its legend
    entry gives its last value."""
    from PIL import Image, ImageDraw

    width, height, left, right, top, bottom = 980, 580, 70, 290, 40, 55
    image = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(image)
    font = _font(13)
    points = [p for line in curves.values() for p in line]
    x_hi = max((p[0] for p in points), default=1) or 1
    ys = [p[1] for p in points] or [0.0, 1.0]
    ends = sorted(line[-1][1] for line in curves.values() if line) or [1.0]
    cap = 2 * ends[len(ends) // 2]
    y_lo, y_hi = min(ys), min(max(ys), cap)
    pad = 0.05 * max(y_hi - y_lo, 1e-6)
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def xy(tokens, nats):
        x = left + tokens / x_hi * (width - left - right)
        y = top + (y_hi - min(nats, y_hi)) / (y_hi - y_lo) * (height - top - bottom)
        return x, y

    d.rectangle([left, top, width - right, height - bottom], outline="black")
    for k in range(6):
        tokens = x_hi * k / 5
        x, _ = xy(tokens, y_lo)
        d.line([x, height - bottom, x, height - bottom + 5], fill="black")
        label = f"{tokens / 1e6:.2f}M" if x_hi >= 1e5 else f"{tokens:.0f}"
        d.text((x - 14, height - bottom + 8), label, fill="black", font=font)
        nats = y_lo + (y_hi - y_lo) * k / 5
        _, y = xy(0, nats)
        d.line([left - 5, y, left, y], fill="black")
        d.text((8, y - 7), f"{nats:.2f}", fill="black", font=font)
    d.text((left + 220, height - 24), "training tokens seen", fill="black", font=font)
    d.text((8, 10), title, fill="black", font=font)
    for i, (label, line) in enumerate(curves.items()):
        colour = COLOURS[i % len(COLOURS)]
        xys = [xy(*p) for p in sorted(line)]
        if len(xys) > 1:
            d.line(xys, fill=colour, width=2)
        for x, y in xys:
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        y = top + 20 * i + 6
        d.line([width - right + 10, y, width - right + 30, y], fill=colour, width=3)
        if not line:
            label = f"{label} (no bound)"
        elif line[-1][1] > y_hi:
            label = f"{label} (off scale: {line[-1][1]:.2f})"
        d.text((width - right + 36, y - 7), label, fill="black", font=font)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


__all__ = ["draw_curves"]
