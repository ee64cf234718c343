"""Tokenizers for diffusion LMs, built offline: a small byte-level BPE trained on the fly, and the
real GPT-2 tokenizer.

* :func:`train_bpe_tokenizer` trains a small byte-level BPE on the fly.
* :func:`gpt2_tokenizer` rebuilds the real GPT-2 tokenizer from the BPE rank file
  ``whisper/assets/gpt2.tiktoken`` shipped in ``openai-whisper==20250625`` (the package is only
  read as data, never imported; ``pip install --no-deps -r requirements-data.txt``).

Every tokenizer built here puts the ``<|mask|>`` token on the *last* id (``len(tokenizer) - 1``),
which is what absorbing-state diffusion models expect (``mask_token_id == vocab_size - 1``).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from ..export.atomic import write_file
from .corpus import MissingDataPackageError, _as_documents, _install_hint

if TYPE_CHECKING:  # heavy import, only needed at call time
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "EOS_TOKEN",
    "MASK_TOKEN",
    "GPT2_EOS_ID",
    "GPT2_MASK_ID",
    "default_cache_dir",
    "train_bpe_tokenizer",
    "gpt2_tokenizer",
]

EOS_TOKEN = "<|endoftext|>"
"""End-of-text token; also used as bos/pad by the tokenizers built here."""

MASK_TOKEN = "<|mask|>"
"""Absorbing-state mask token; always the last id of the tokenizers built here."""

GPT2_EOS_ID = 50256
GPT2_MASK_ID = 50257

# 256 byte-level symbols + <|endoftext|> + <|mask|>
_MIN_BPE_VOCAB = 258

_WHISPER_DIST = "openai-whisper"
_WHISPER_PIN = "openai-whisper==20250625"
_GPT2_ASSET = "whisper/assets/gpt2.tiktoken"
_GPT2_RANKS = 50256  # lines in gpt2.tiktoken: 256 single bytes + 50000 merges
_GPT2_CACHE_VERSION = 1


def _wrap(backend: Tokenizer, *, bos_eos_pad: str, mask: str | None, unk: str | None = None) -> PreTrainedTokenizerFast:
    """Wrap a ``tokenizers.Tokenizer`` into a transformers fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    kwargs: dict[str, str] = {"bos_token": bos_eos_pad, "eos_token": bos_eos_pad, "pad_token": bos_eos_pad}
    if unk is not None:
        kwargs["unk_token"] = unk
    if mask is not None:
        kwargs["mask_token"] = mask
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False, **kwargs)
    if mask is not None:
        mask_id = tok.convert_tokens_to_ids(mask)
        if mask_id != len(tok) - 1:  # pragma: no cover - guards the invariant
            raise RuntimeError(f"{mask} has id {mask_id}, expected the last id {len(tok) - 1}")
    return tok


def _byte_level_pipeline(tok: Tokenizer) -> None:
    """GPT-2 style byte-level pre-tokenizer (GPT-2 regex, no prefix space), decoder and post-processor."""
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)


def _special(content: str) -> AddedToken:
    return AddedToken(content, special=True, normalized=False, single_word=False, lstrip=False, rstrip=False)


def train_bpe_tokenizer(text: str | Sequence[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a small byte-level BPE tokenizer on ``text`` (deterministic, a few seconds per MB).

    Layout of the ids: ``0`` is ``<|endoftext|>`` (used as bos, eos and pad),
    then the 256 byte symbols, then the learned merges, and finally ``<|mask|>``
    on the **last** id, ``len(tokenizer) - 1``. ``len(tokenizer) == vocab_size``
    unless the text is too small to supply that many merges, in which case it is
    smaller; always size models with ``len(tokenizer)``.

    Every byte sequence can be encoded (no unknown token) and
    ``decode(encode(s)) == s``.

    Args:
        text: Training text, or a sequence of documents.
        vocab_size: Target total vocabulary size, special tokens included
            (at least 258 = 256 bytes + ``<|endoftext|>`` + ``<|mask|>``).

    Raises:
        ValueError: ``vocab_size`` is too small or ``text`` is empty.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < _MIN_BPE_VOCAB:
        raise ValueError(
            f"vocab_size must be an integer >= {_MIN_BPE_VOCAB} (256 byte symbols + {EOS_TOKEN} + {MASK_TOKEN}), "
            f"got {vocab_size!r}"
        )
    docs = _as_documents(text, "text")

    backend = Tokenizer(models.BPE())
    _byte_level_pipeline(backend)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,  # the last id is reserved for <|mask|>
        special_tokens=[_special(EOS_TOKEN)],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_line_batches(docs), trainer=trainer)
    backend.add_special_tokens([_special(MASK_TOKEN)])
    return _wrap(backend, bos_eos_pad=EOS_TOKEN, mask=MASK_TOKEN)


def _line_batches(docs: Sequence[str], batch_chars: int = 1 << 16) -> Iterator[str]:
    """Yield line-aligned chunks of about ``batch_chars`` characters (lets the trainer parallelise)."""
    for doc in docs:
        start = 0
        while start < len(doc):
            end = doc.find("\n", start + batch_chars)
            end = len(doc) if end < 0 else end + 1
            yield doc[start:end]
            start = end


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    table: dict[int, str] = {}
    shifted = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def _split_with_lower_ranks(token: bytes, ranks: dict[bytes, int], max_rank: int) -> list[bytes]:
    """Apply BPE to ``token`` using only merges of rank < ``max_rank``.

    For a token of rank ``r``, the result is exactly the two parts that the
    merge of rank ``r`` joins: this recovers the merge list from a rank file.
    """
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best_rank = max_rank
        best_i = -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < best_rank:
                best_rank, best_i = r, i
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


def _whisper_gpt2_asset() -> Path:
    """Path of ``whisper/assets/gpt2.tiktoken`` inside the installed ``openai-whisper`` distribution."""
    try:
        dist = importlib.metadata.distribution(_WHISPER_DIST)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        path = Path(str(dist.locate_file(_GPT2_ASSET)))
        if path.is_file():
            return path
        for f in dist.files or ():  # unusual layouts: search the RECORD
            if f.as_posix().endswith(_GPT2_ASSET):
                path = Path(str(dist.locate_file(f)))
                if path.is_file():
                    return path
    raise MissingDataPackageError(
        f"The offline GPT-2 tokenizer is rebuilt from `{_GPT2_ASSET}` of the PyPI package `{_WHISPER_PIN}`, "
        "which is not installed (it is read as a data file, never imported). " + _install_hint(_WHISPER_PIN),
        name="whisper",
    )


def _build_gpt2_backend(rank_file_bytes: bytes) -> Tokenizer:
    """Rebuild GPT-2's byte-level BPE (50257 tokens) from a tiktoken rank file."""
    ranks: dict[bytes, int] = {}
    for line in rank_file_bytes.splitlines():
        if not line.strip():
            continue
        token_b64, rank = line.split()
        ranks[base64.b64decode(token_b64)] = int(rank)
    if sorted(ranks.values()) != list(range(_GPT2_RANKS)):
        raise RuntimeError(f"{_GPT2_ASSET}: expected ranks 0..{_GPT2_RANKS - 1}, got {len(ranks)} entries")

    to_unicode = _bytes_to_unicode()

    def symbol(b: bytes) -> str:
        return "".join(to_unicode[x] for x in b)

    vocab = {symbol(token): rank for token, rank in ranks.items()}
    merges: list[tuple[str, str]] = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue
        parts = _split_with_lower_ranks(token, ranks, rank)
        if len(parts) != 2:
            raise RuntimeError(f"{_GPT2_ASSET}: cannot recover the merge for rank {rank} ({token!r})")
        merges.append((symbol(parts[0]), symbol(parts[1])))
    vocab[EOS_TOKEN] = GPT2_EOS_ID

    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    _byte_level_pipeline(backend)
    backend.add_special_tokens([_special(EOS_TOKEN)])
    return backend


def default_cache_dir() -> Path:
    """Cache directory of ``hf_ddlm.data``.

    First of: ``$HF_DDLM_CACHE``; ``$HF_HOME/hf_ddlm``; ``$XDG_CACHE_HOME/hf_ddlm``;
    ``~/.cache/hf_ddlm``.
    """
    if env := os.environ.get("HF_DDLM_CACHE"):
        return Path(env).expanduser()
    for var in ("HF_HOME", "XDG_CACHE_HOME"):
        if env := os.environ.get(var):
            return Path(env).expanduser() / "hf_ddlm"
    return Path.home() / ".cache" / "hf_ddlm"


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (``hf_ddlm.export.atomic``), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, text)


def _load_gpt2_json(path: Path) -> str | None:
    """Return the cached tokenizer JSON if it exists and looks like GPT-2, else ``None``."""
    try:
        text = path.read_text(encoding="utf-8")
        backend = Tokenizer.from_str(text)
    except Exception:  # missing, unreadable or corrupt: rebuild
        return None
    if backend.get_vocab_size() != GPT2_EOS_ID + 1 or backend.token_to_id(EOS_TOKEN) != GPT2_EOS_ID:
        return None
    return text


_GPT2_MEMO: dict[str, str] = {}
_GPT2_LOCK = threading.Lock()


def _gpt2_backend_json(cache_dir: Path | None) -> str:
    """tokenizer.json text of the rebuilt GPT-2 tokenizer (memoised in-process and on disk)."""
    asset = _whisper_gpt2_asset()
    data = asset.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    with _GPT2_LOCK:
        if digest in _GPT2_MEMO:
            return _GPT2_MEMO[digest]
        cache_file = (cache_dir or default_cache_dir()) / f"gpt2-{digest}-v{_GPT2_CACHE_VERSION}.tokenizer.json"
        text = _load_gpt2_json(cache_file)
        if text is None:
            text = _build_gpt2_backend(data).to_str()
            try:
                _atomic_write_text(cache_file, text)
            except OSError:  # read-only or full cache dir: keep working without a disk cache
                pass
        _GPT2_MEMO[digest] = text
        return text


def gpt2_tokenizer(with_mask: bool = True, cache_dir: str | os.PathLike[str] | None = None) -> PreTrainedTokenizerFast:
    """The GPT-2 tokenizer, rebuilt offline from ``openai-whisper``'s ``gpt2.tiktoken``.

    The ids are identical to GPT-2's (``"Hello world"`` -> ``[15496, 995]``,
    ``<|endoftext|>`` = 50256, 50257 tokens). With ``with_mask`` (the default),
    ``<|mask|>`` is appended as id 50257, so ``len(tokenizer) == 50258``, the
    vocabulary of the published SEDD/MDLM OpenWebText checkpoints.
    ``<|endoftext|>`` serves as bos, eos, unk and pad.

    Building takes about a second; the resulting ``tokenizer.json`` is cached
    (written atomically) under ``cache_dir`` (default :func:`default_cache_dir`)
    and in-process, so later calls are fast. Each call returns a new tokenizer
    object.

    Raises:
        MissingDataPackageError: ``openai-whisper==20250625`` is not installed.
    """
    text = _gpt2_backend_json(Path(cache_dir).expanduser() if cache_dir is not None else None)
    backend = Tokenizer.from_str(text)
    if with_mask:
        backend.add_special_tokens([_special(MASK_TOKEN)])
    return _wrap(backend, bos_eos_pad=EOS_TOKEN, unk=EOS_TOKEN, mask=MASK_TOKEN if with_mask else None)
