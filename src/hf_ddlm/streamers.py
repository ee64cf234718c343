"""Streamers for ``generate``: watch the denoising as it happens.

``generate`` follows the ``transformers`` streamer contract of diffusion models (DiffusionGemma):
``put(prompt)`` first (an empty tensor when there is no prefix prompt), ``put_draft(canvas)`` after
every denoising step when the streamer has that method, then ``put(final canvas)`` and ``end()``.
The canvas is the generated part (the whole sequence when infilling).

* :class:`TextDiffusionStreamer` is transformers' own (batch size 1): each draft is printed in
  yellow over the previous one, the final text stays.
* :class:`TrajectoryStreamer` records the prompt, every draft and the final canvas, e.g. for
  :mod:`hf_ddlm.visualization`.
* :class:`LiveDenoisingStreamer` draws a live view in a terminal: a progress bar and the canvas,
  masked positions as ``░``, tokens decided at this step highlighted. On a non-terminal it only
  prints the final text.
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import time

import torch

try:  # transformers >= 5.23
    from transformers.generation.streamers import BaseStreamer, TextDiffusionStreamer
except ImportError:  # pragma: no cover - older transformers 5.x
    from transformers.generation.streamers import BaseStreamer, TextStreamer

    class TextDiffusionStreamer(TextStreamer):
        """Fallback for transformers < 5.23: drafts are printed in yellow over each other."""

        def __init__(self, tokenizer, skip_prompt: bool = False, sleep_time: float | None = None, **decode_kwargs):
            super().__init__(tokenizer, skip_prompt, **decode_kwargs)
            self._has_draft = False
            self.sleep_time = sleep_time

        def _clear_draft(self):
            if self._has_draft:
                print("\0338\033[J", end="", flush=True)
                self._has_draft = False

        def put_draft(self, value, **kwargs):
            self._clear_draft()
            if value.dim() > 1 and value.shape[0] > 1:
                raise ValueError("TextDiffusionStreamer only supports batch size 1")
            value = value[0] if value.dim() > 1 else value
            print("\0337" + f"\033[33m{self.tokenizer.decode(value, **self.decode_kwargs)}\033[0m", end="", flush=True)
            self._has_draft = True
            if self.sleep_time is not None:
                time.sleep(self.sleep_time)

        def put(self, value):
            self._clear_draft()
            super().put(value)

        def end(self):
            self._clear_draft()
            super().end()


def _as_2d(value) -> torch.Tensor:
    value = torch.as_tensor(value).detach().cpu().long()
    if value.dim() == 1:
        value = value[None]
    if value.dim() != 2:
        raise ValueError(f"a streamer expects token ids of shape [batch, length], got {tuple(value.shape)}")
    return value


class TrajectoryStreamer(BaseStreamer):
    """Records what ``generate`` streams: ``prompt`` [B, P], ``drafts`` (one [B, L] canvas per
    denoising step) and ``final`` [B, L]. :meth:`trajectory` gives the full sequences (prompt +
    canvas) after every step, the input of :func:`hf_ddlm.visualization.decision_steps`."""

    def __init__(self):
        self.prompt: torch.Tensor | None = None
        self.drafts: list[torch.Tensor] = []
        self.final: torch.Tensor | None = None
        self.ended = False

    def put(self, value):
        value = _as_2d(value)
        if self.prompt is None:
            self.prompt = value
        elif self.final is None:
            self.final = value
        else:  # block-wise decoders put one committed block at a time
            self.final = torch.cat([self.final, value], dim=1)

    def put_draft(self, value, **kwargs):
        self.drafts.append(_as_2d(value))

    def end(self):
        self.ended = True

    def trajectory(self) -> list[torch.Tensor]:
        prompt = self.prompt if self.prompt is not None else torch.zeros(1, 0, dtype=torch.long)
        return [torch.cat([prompt.expand(d.shape[0], -1), d], dim=1) for d in self.drafts]


_ANSI = re.compile(r"\033\[[0-9;]*[A-Za-z]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # C0 controls and DEL, except tab and newline


class LiveDenoisingStreamer(BaseStreamer):
    """A live terminal view of the denoising: a progress bar and the canvas, redrawn in place.

    Args:
        tokenizer: decodes token ids (one token at a time, cached).
        mask_token_id: the absorbing mask id (``model.config.mask_token_id``); ``None`` for the
            uniform graph, where tokens changed at a step are highlighted instead.
        total_steps: the number of drafts to expect (``num_inference_steps``, plus one with noise
            removal) for the progress bar.
        file: where to draw (default ``sys.stdout``).
        interactive: redraw in place with ANSI codes; default: ``file.isatty()``. When False only
            the final text is printed, at ``end()``.
        min_interval: seconds between redraws (the last draft is always drawn).
        mask_symbol: what a masked position looks like.
        skip_special_tokens: hide special tokens (not the mask) in the view.
    """

    def __init__(
        self,
        tokenizer,
        mask_token_id: int | None = None,
        total_steps: int | None = None,
        file=None,
        interactive: bool | None = None,
        min_interval: float = 0.05,
        mask_symbol: str = "░",
        skip_special_tokens: bool = True,
    ):
        self.tokenizer = tokenizer
        self.mask_token_id = mask_token_id
        self.total_steps = total_steps
        self.file = file if file is not None else sys.stdout
        if interactive is None:
            isatty = getattr(self.file, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self.min_interval = min_interval
        self.mask_symbol = mask_symbol
        self.skip_special_tokens = skip_special_tokens
        self._special = set(getattr(tokenizer, "all_special_ids", []) or []) - {mask_token_id}
        self._pieces: dict[int, str] = {}
        self.prompt: torch.Tensor | None = None
        self.previous: torch.Tensor | None = None
        self.final: torch.Tensor | None = None
        self.steps_seen = 0
        self._rows_drawn = 0
        self._last_draw = 0.0

    # -- rendering --------------------------------------------------------------------------
    def _piece(self, token_id: int) -> str:
        if token_id not in self._pieces:
            if self.skip_special_tokens and token_id in self._special:
                self._pieces[token_id] = ""
            else:
                # a token must not drive the terminal: control characters (ESC...) are replaced
                text = self.tokenizer.decode([token_id]).replace("\t", " ")
                self._pieces[token_id] = _CONTROL.sub("\ufffd", text)
        return self._pieces[token_id]

    def _progress(self) -> str:
        if not self.total_steps:
            return f"denoising: step {self.steps_seen}"
        frac = min(1.0, self.steps_seen / self.total_steps)
        width = 24
        filled = int(frac * width)
        bar = "█" * filled + " " * (width - filled)
        return f"denoising ▕{bar}▏ {self.steps_seen}/{self.total_steps}"

    def _render(self, canvas: torch.Tensor, colour: bool) -> str:
        lines = []
        masked_total = 0
        for row in range(canvas.shape[0]):
            parts = []
            if self.prompt is not None and self.prompt.shape[1]:
                prompt_text = "".join(self._piece(int(i)) for i in self.prompt[min(row, self.prompt.shape[0] - 1)])
                parts.append(f"\033[2m{prompt_text}\033[0m" if colour else prompt_text)
            prev = self.previous[row] if self.previous is not None and self.previous.shape == canvas.shape else None
            for j, token in enumerate(canvas[row].tolist()):
                if self.mask_token_id is not None and token == self.mask_token_id:
                    masked_total += 1
                    parts.append(f"\033[90m{self.mask_symbol}\033[0m" if colour else self.mask_symbol)
                    continue
                piece = self._piece(token)
                changed = prev is not None and int(prev[j]) != token
                parts.append(f"\033[1;33m{piece}\033[0m" if colour and changed else piece)
            prefix = f"[{row}] " if canvas.shape[0] > 1 else ""
            lines.append(prefix + "".join(parts))
        header = self._progress()
        if self.mask_token_id is not None:
            header += f"  masked {masked_total}/{canvas.numel()}"
        return header + "\n" + "\n".join(lines)

    def _rows(self, text: str) -> int:
        width = max(1, shutil.get_terminal_size((80, 24)).columns)
        return sum(max(1, math.ceil(len(_ANSI.sub("", line)) / width)) for line in text.split("\n"))

    def _draw(self, canvas: torch.Tensor, force: bool = False):
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        text = self._render(canvas, colour=True)
        out = ""
        if self._rows_drawn:  # back to the first row of the previous view, then clear below
            out += "\r" + (f"\033[{self._rows_drawn - 1}A" if self._rows_drawn > 1 else "") + "\033[J"
        self.file.write(out + text)
        self.file.flush()
        self._rows_drawn = self._rows(text)

    # -- the streamer protocol --------------------------------------------------------------
    def put(self, value):
        value = _as_2d(value)
        if self.prompt is None:
            self.prompt = value
            return
        self.final = value if self.final is None else torch.cat([self.final, value], dim=1)

    def put_draft(self, value, **kwargs):
        value = _as_2d(value)
        self.steps_seen += 1
        last = self.total_steps is not None and self.steps_seen >= self.total_steps
        if self.interactive:
            self._draw(value, force=last)
        self.previous = value

    def end(self):
        final = self.final if self.final is not None else self.previous
        if final is None:
            return
        if self.interactive:
            self.previous = final  # nothing highlighted in the final view
            self._draw(final, force=True)
            self.file.write("\n")
        else:
            prompt = self.prompt if self.prompt is not None else torch.zeros(final.shape[0], 0, dtype=torch.long)
            for row in range(final.shape[0]):
                ids = torch.cat([prompt[min(row, prompt.shape[0] - 1)], final[row]]) if prompt.numel() else final[row]
                self.file.write(self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens) + "\n")
        self.file.flush()


__all__ = ["LiveDenoisingStreamer", "TextDiffusionStreamer", "TrajectoryStreamer"]
