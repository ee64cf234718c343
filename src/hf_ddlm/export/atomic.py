"""Writing files and checkpoint folders so that a crash at any moment leaves the old or the new one.

A plain ``open(path, "w")`` truncates first: a process killed before it writes (``kill -9``, an
out-of-memory kill, a power cut) leaves an empty ``config.json``, and a checkpoint folder is several
files that must change together. Two tools:

* :func:`write_file` / :func:`atomic_path`: one file is written to a temporary file in the same
  folder, flushed to disk (``fsync``) and renamed over the target (``os.replace``, atomic on POSIX
  and Windows); the folder is fsynced so that the rename survives a power cut. The path holds the
  whole old file or the whole new one, never a part.
* :func:`replace_folder`: a checkpoint folder is written whole into a hidden staging sibling
  (``.NAME.hf_ddlm-staging-*``), completed with the old folder's other files (hard links, so
  nothing is copied: a tokenizer, a user's notes, a Trainer's ``optimizer.pt``), fsynced, and
  swapped with the folder in one atomic step: ``renameat2(RENAME_EXCHANGE)`` on Linux (ext4, xfs,
  btrfs, tmpfs, ...), ``renamex_np(RENAME_SWAP)`` on macOS (APFS), a plain rename when the folder
  does not exist yet. After the swap the old folder (now under the staging name) is deleted.

The guarantee: where the swap is available (the folder's parent is writable and on the folder's own
file system), a crash at any moment leaves the path holding the complete old folder or the complete
new one, byte for byte; a crash may also leave a hidden sibling ``.NAME.hf_ddlm-staging-*`` (the
unfinished new folder or the not yet deleted old one), which is safe to delete. Elsewhere (Windows,
network file systems without the swap, a folder that is a mount point, a read-only parent) the new
files are staged inside the folder and moved in one by one, each atomically, ``config.json`` last:
every file is whole (old or new), but a crash during the moves can leave new weights beside the old
``config.json``. The folder's path is kept; its inode changes (a process whose working directory
was inside it is moved to the new one).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

STAGING = "hf_ddlm-staging-"
# the files transformers' save_pretrained deletes before a save: shards of the weights not rewritten
_SHARD = re.compile(r"model.*-\d{5}-of-\d{5}\.(safetensors|bin)")
# errors of the swap that mean "not supported here": fall back to moving the files one by one
_NO_SWAP = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EBUSY, errno.EPERM}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path, directory: bool = False) -> None:
    """Flush ``path`` (a file, or a folder's entries) to disk; a no-op where the platform cannot
    (Windows has no fsync of a folder)."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A temporary path beside ``path`` for any writer (Pillow's ``save``, ``save_file``); when the
    block ends it is fsynced and renamed over ``path``, or deleted if the block raised."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        # mkstemp makes a private file: give the replaced file's mode, or the usual one under the umask
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, directory=True)


def write_file(path, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    return Path(path)


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` in one atomic step; False where the system cannot."""
    if sys.platform.startswith("linux"):
        name, flag = "renameat2", 2  # RENAME_EXCHANGE; called as renameat2(AT_FDCWD, a, AT_FDCWD, b, flag)
    elif sys.platform == "darwin":
        name, flag = "renamex_np", 2  # RENAME_SWAP
    else:
        return False
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):  # an old C library
        return False
    if name == "renameat2":
        at_fdcwd = -100
        result = function(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), flag)
    else:
        result = function(os.fsencode(a), os.fsencode(b), flag)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_SWAP:
        return False
    raise OSError(code, os.strerror(code), str(b))


def _link_tree(src: Path, dst: Path) -> None:
    """``dst`` as a copy of ``src`` made of hard links (a copy where links are impossible)."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        dst.mkdir()
        shutil.copymode(src, dst)
        for child in src.iterdir():
            _link_tree(child, dst / child.name)
    else:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(os.path.join(folder, name))
        _fsync(folder, directory=True)


@contextlib.contextmanager
def replace_folder(destination, carry_over: bool = True, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Stage a new version of the folder ``destination`` and swap it in atomically (see the module
    docstring for the exact guarantee).

    Yields an empty staging folder; write the whole new folder there. When the block ends without
    an error, the old folder's entries that the new one lacks are carried over (unless
    ``carry_over`` is False: the folder is replaced wholesale), except the stale weight shards
    that ``save_pretrained`` would delete, and the folders are swapped. ``keep`` names files of the
    old folder copied into the staging folder before the block (e.g. a README.md that a writer may
    keep or replace). If the block raises, the staging folder is deleted and the old folder is
    untouched. A symlink to a folder is followed: its target is replaced."""
    dst = Path(os.path.realpath(destination))
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"{destination} exists and is not a folder")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        stage, inside = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.{STAGING}")), False
    except OSError:  # a parent we may not write into: stage inside the folder, move the files in
        dst.mkdir(exist_ok=True)
        stage, inside = Path(tempfile.mkdtemp(dir=dst, prefix=f".{STAGING}")), True
    try:
        for name in keep:
            if (dst / name).is_file():
                shutil.copy2(dst / name, stage / name)
        yield stage
        _commit(stage, dst, carry_over, inside)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _commit(stage: Path, dst: Path, carry_over: bool, inside: bool) -> None:
    os.chmod(stage, stat.S_IMODE(dst.stat().st_mode) if dst.is_dir() else 0o777 & ~_umask())
    if not inside and not dst.exists():
        _fsync_tree(stage)
        os.rename(stage, dst)  # the folder appears whole at once
        _fsync(dst.parent, directory=True)
        return
    carried = set()
    if carry_over and not inside:
        for entry in dst.iterdir():
            name = entry.name
            if (stage / name).exists() or _stale(name):
                continue
            _link_tree(entry, stage / name)
            carried.add(name)
    _fsync_tree(stage)
    if not inside:
        cwd = os.getcwd()
        if _exchange(stage, dst):
            _fsync(dst.parent, directory=True)
            if Path(cwd) == dst or dst in Path(cwd).parents:
                with contextlib.suppress(OSError):
                    os.chdir(cwd)  # the path, now the new folder
            shutil.rmtree(stage, ignore_errors=True)  # the old folder
            return
    # no atomic swap here: move the new files in one by one (each atomically), config.json last
    names = sorted((p.name for p in stage.iterdir() if p.name not in carried), key=lambda n: n == "config.json")
    for name in names:
        target = dst / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        try:
            os.replace(stage / name, target)
        except OSError as error:  # the folder is another file system (a mount point): copy, then rename
            if error.errno != errno.EXDEV or (stage / name).is_dir():
                raise
            with atomic_path(target) as tmp:
                shutil.copyfile(stage / name, tmp)
    for entry in dst.iterdir():  # what the new folder does not keep: everything, or the stale shards
        if entry.name in names or entry == stage or entry.name.startswith(f".{STAGING}"):
            continue
        if not carry_over or _stale(entry.name):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    _fsync(dst, directory=True)
    shutil.rmtree(stage, ignore_errors=True)


def _stale(name: str) -> bool:
    """Whether ``name`` in an old folder is not carried into the new one: a weight shard (which
    transformers' save_pretrained deletes unless rewritten) or an unfinished staging folder."""
    return bool(_SHARD.fullmatch(name)) or name.startswith(f".{STAGING}")


__all__ = ["atomic_path", "replace_folder", "write_file"]
