"""A self-contained HTML page of a denoising trajectory (no external resources, no Pillow): the
canvas at every step, with a step slider and a play button."""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..export.atomic import write_file
from .trajectory import _SCALE, _Pieces, _prepare

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
    write_file(path, page)  # a temporary file renamed over ``path``
    return Path(path)


__all__ = ["save_trajectory_html"]
