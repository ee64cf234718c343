"""The one train / validation split every method sees, and the one data order.

The text (the offline Shakespeare plays, or ``text_file``) trains the quickstart's byte-level BPE
tokenizer (mask token = last id; or ``tokenizer="gpt2"``: GPT-2's, with the mask as id 50257) and is cut into rows of ``seq_len`` tokens; the last
``validation_fraction`` of the rows (the last text read) is the validation split. Batches are a
pure function of the step (a fixed permutation per epoch), so every method sees the same rows in
the same order, and a resumed run needs no data-loader state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class SplitData:
    tokenizer: object
    train: torch.Tensor  # [N, seq_len] token ids
    validation: torch.Tensor  # [M, seq_len]
    eval_subset: torch.Tensor  # [K, seq_len]: fixed rows of the validation split (the plot's evaluations)
    num_chars: int


def load_split(settings) -> SplitData:
    from ..data import chunk_dataset, gpt2_tokenizer, shakespeare_text, train_bpe_tokenizer

    if settings.text_file is not None:
        path = Path(settings.text_file)
        if not path.is_file():
            raise ValueError(f"text_file {settings.text_file!r} is not a file")
        text = path.read_text(encoding="utf-8")[: settings.max_chars]
    else:
        text = shakespeare_text(max_chars=settings.max_chars)
    if settings.tokenizer == "gpt2":
        tokenizer = gpt2_tokenizer(with_mask=True)
    else:
        tokenizer = train_bpe_tokenizer(text, vocab_size=settings.vocab_size)
    rows = chunk_dataset([text], tokenizer, settings.seq_len).with_format("torch")[:]["input_ids"]
    n_val = max(1, round(rows.shape[0] * settings.validation_fraction))
    if rows.shape[0] - n_val < settings.batch_size:
        raise ValueError(
            f"the text gives {rows.shape[0]} rows of {settings.seq_len} tokens: too few for batches of "
            f"{settings.batch_size} (raise max_chars or pass a longer text_file)"
        )
    train, validation = rows[:-n_val], rows[-n_val:]
    if settings.eval_max_rows is not None:
        validation = validation[: settings.eval_max_rows]
    pick = torch.randperm(validation.shape[0], generator=torch.Generator().manual_seed(settings.seed))
    subset = validation[pick[: settings.eval_subset].sort().values]
    return SplitData(tokenizer, train, validation, subset, len(text))


def batch_indices(step: int, num_rows: int, batch_size: int, seed: int) -> torch.Tensor:
    """The rows of training step ``step`` (0-based): epoch e is a permutation seeded by (seed, e),
    cut into ``num_rows // batch_size`` batches (the remainder of each epoch is skipped)."""
    per_epoch = num_rows // batch_size
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(num_rows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[position * batch_size : (position + 1) * batch_size]


__all__ = ["SplitData", "batch_indices", "load_split"]
