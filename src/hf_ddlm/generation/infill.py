"""Infilling patterns: text with holes ``[[N]]`` (N tokens to generate), turned into the
``input_ids`` and ``infill_mask`` that ``generate(..., infill_mask=...)`` takes.

    ids, holes = parse_infill_pattern("The [[3]] sat on the [[2]].", tokenizer)
    model.generate(input_ids=ids[None], infill_mask=holes[None])
"""

from __future__ import annotations

import re

import torch

# the two delimiters of a hole; everything else in a pattern is text
_HOLE = re.compile(r"\[\[|\]\]")


def parse_infill_pattern(pattern: str, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse an infilling pattern: text with holes ``[[N]]`` (N tokens to generate).

    ``"The [[3]] sat on the [[2]]."`` gives the token ids of the text pieces (each tokenized on
    its own, without special tokens) with N placeholder positions per hole, and a boolean mask
    that is True on the holes. Returns ``(input_ids [L], infill_mask [L])``. Raises ValueError for
    a hole that is not closed, a ``]]`` without ``[[``, a hole size that is not a positive
    integer, or a pattern without holes.
    """
    pieces: list[tuple[str, object]] = []  # ("text", str) or ("hole", n)
    pos, open_at = 0, None
    for match in _HOLE.finditer(pattern):
        token = match.group()
        if token == "[[":
            if open_at is not None:
                raise ValueError(
                    f"infill pattern: '[[' at character {match.start()} opens a hole inside the hole at {open_at}"
                )
            pieces.append(("text", pattern[pos : match.start()]))
            open_at, pos = match.start(), match.end()
        else:
            if open_at is None:
                raise ValueError(f"infill pattern: ']]' at character {match.start()} has no matching '[['")
            content = pattern[pos : match.start()].strip()
            if not content.isdigit() or int(content) < 1:
                raise ValueError(
                    f"infill pattern: hole '[[{pattern[pos : match.start()]}]]' at character {open_at} must hold a positive "
                    "number of tokens, e.g. [[5]]"
                )
            pieces.append(("hole", int(content)))
            open_at, pos = None, match.end()
    if open_at is not None:
        raise ValueError(f"infill pattern: '[[' at character {open_at} is not closed by ']]'")
    pieces.append(("text", pattern[pos:]))
    if not any(kind == "hole" for kind, _ in pieces):
        raise ValueError(
            "infill pattern has no hole: mark each span to generate as [[N]] (N tokens), e.g. 'The [[3]] sat.'"
        )
    # the placeholder's value never matters (generate draws the holes from the prior); the mask id reads well
    mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else 0
    ids, holes = [], []
    for kind, value in pieces:
        if kind == "text":
            if value:
                encoded = tokenizer(value, add_special_tokens=False)["input_ids"]
                ids += encoded
                holes += [False] * len(encoded)
        else:
            ids += [mask_id] * value
            holes += [True] * value
    return torch.tensor(ids, dtype=torch.long), torch.tensor(holes, dtype=torch.bool)


__all__ = ["parse_infill_pattern"]
