"""Fixed-length chunking: documents tokenized, concatenated and cut into rows of ``seq_len`` tokens,
the training rows of a diffusion LM (every position is noised and scored)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, pre_tokenizers

from .corpus import _as_documents

if TYPE_CHECKING:  # heavy imports, only needed at call time
    import datasets
    from transformers import PreTrainedTokenizerBase

__all__ = ["chunk_dataset"]

_SPLIT_POINT = re.compile(r"\n(?=\S)")


def _splits_safely(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether :func:`_split_for_encoding` keeps ``tokenizer``'s ids unchanged.

    True for fast tokenizers with no normalizer and a GPT-2 style ByteLevel
    pre-tokenizer (regex on, no prefix space), such as those built here.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer) or backend.normalizer is not None:
        return False
    pre = backend.pre_tokenizer
    return (
        isinstance(pre, pre_tokenizers.ByteLevel)
        and not pre.add_prefix_space
        and bool(getattr(pre, "use_regex", False))
    )


def _split_for_encoding(doc: str, piece_chars: int = 1 << 15) -> list[str]:
    """Cut ``doc`` into pieces of about ``piece_chars`` characters for parallel encoding.

    Cuts are made just before a newline that is followed by a non-space
    character. With GPT-2 style byte-level pre-tokenization (and with any
    pre-tokenizer that splits on whitespace) that position is always a
    pre-token boundary, so encoding the pieces separately gives the same ids
    as encoding ``doc`` whole.
    """
    if len(doc) <= 2 * piece_chars:
        return [doc]
    pieces: list[str] = []
    start = 0
    while len(doc) - start > 2 * piece_chars:
        m = _SPLIT_POINT.search(doc, start + piece_chars)
        if m is None:
            break
        pieces.append(doc[start : m.start()])
        start = m.start()
    pieces.append(doc[start:])
    return pieces


def chunk_dataset(
    texts: Sequence[str] | str,
    tokenizer: PreTrainedTokenizerBase,
    seq_len: int,
    add_eos: bool = True,
) -> datasets.Dataset:
    """Tokenize, concatenate and cut ``texts`` into rows of exactly ``seq_len`` tokens.

    Documents are tokenized without special tokens and concatenated; with
    ``add_eos`` an ``eos_token_id`` is inserted between consecutive documents.
    The stream is then cut into ``len(stream) // seq_len`` rows; the remainder
    is dropped. Empty documents are skipped.

    Returns:
        A ``datasets.Dataset`` with columns ``input_ids`` and ``labels``
        (identical, as stock collators produce), formatted for torch, so
        ``ds[i]["input_ids"]`` is an int64 tensor of shape ``(seq_len,)``.

    Raises:
        ValueError: ``seq_len`` < 1, ``texts`` empty or shorter than one row,
            or ``add_eos`` with a ``tokenizer`` that has no eos token.
    """
    import datasets
    import numpy as np

    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    docs = _as_documents(texts, "texts")
    eos_id = getattr(tokenizer, "eos_token_id", None)
    if add_eos and eos_id is None:
        raise ValueError("tokenizer has no eos_token_id; set tokenizer.eos_token or pass add_eos=False")

    # Long documents are cut at pre-token boundaries into pieces that are
    # encoded in one parallel batch; the ids are the same as for whole documents.
    splittable = _splits_safely(tokenizer)
    splits = [_split_for_encoding(doc) if splittable else [doc] for doc in docs]
    flat = [piece for pieces_of_doc in splits for piece in pieces_of_doc]
    encoded = tokenizer(flat, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    pieces: list[np.ndarray] = []
    k = 0
    for i, doc_pieces in enumerate(splits):
        if add_eos and i > 0:
            pieces.append(np.asarray([eos_id], dtype=np.int64))
        for ids in encoded[k : k + len(doc_pieces)]:
            pieces.append(np.asarray(ids, dtype=np.int64))
        k += len(doc_pieces)
    stream = np.concatenate(pieces)
    n_rows = stream.size // seq_len
    if n_rows == 0:
        raise ValueError(f"texts give only {stream.size} tokens, fewer than seq_len={seq_len}: no full row")
    rows = stream[: n_rows * seq_len].reshape(n_rows, seq_len).tolist()
    ds = datasets.Dataset.from_dict({"input_ids": rows, "labels": rows})
    return ds.with_format("torch")
