"""``kill -9`` during a save leaves the old checkpoint or the new one (issue 10, files and security).

A forked child saves model B over a folder holding model A. An audit hook in the child (``sys.
addaudithook``: it sees every ``open`` for writing, rename, remove, mkdir, link, ... that Python
makes, whatever code makes it) numbers the file-system changes; the child stops at the k-th one,
tells the parent through a pipe, and the parent kills it with SIGKILL. The stop happens as late as
it can: an ``open`` that truncates or creates is stopped after its effect (the file exists, empty),
the other changes just before they happen; transformers' safetensors writer (Rust, not seen by the
hook) is stopped with the weights file half written. For every k, the folder must then load as A or
as B exactly (config, generation config and every weight), and the old folder's other files (a
tokenizer, a user's notes) must still be there.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from hf_ddlm.export import atomic, export_model
from hf_ddlm.models.sedd.convert_sedd_checkpoint import write_checkpoint

from .common import find_model, tiny_model

pytestmark = pytest.mark.skipif(
    not (hasattr(os, "fork") and os.path.isdir("/proc/self/fd")), reason="needs fork and /proc (Linux)"
)

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
MUTATIONS = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.link", "os.symlink", "os.truncate", "shutil.rmtree"}


def _resolve(path, dir_fd=None) -> str | None:
    if isinstance(path, int):
        return None
    path = os.fsdecode(path)
    if dir_fd is not None and not os.path.isabs(path):
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    return os.path.abspath(path)


def _child(root: str, kill_at: int, write_fd: int, save) -> None:
    """Run ``save()`` in this (forked) process, stopping at the ``kill_at``-th change under ``root``."""
    count = [0]
    busy = [False]

    def report(line: str) -> None:
        os.write(write_fd, (line + "\n").encode())

    def reached(description: str, effect=None) -> None:
        k = count[0]
        count[0] += 1
        report(f"event {k} {description}")
        if k == kill_at:
            if effect is not None:
                effect()
            report(f"stopped {k}")
            while True:
                time.sleep(60)

    def hook(event, args):
        if busy[0]:
            return
        busy[0] = True
        try:
            if event == "open":
                path, mode, flags = args
                path = _resolve(path)
                writes = (mode is not None and any(c in mode for c in "wax+")) or (mode is None and flags & WRITE_FLAGS)
                if path and path.startswith(root) and writes:
                    truncates = (mode is not None and "w" in mode) or (mode is None and flags & os.O_TRUNC)
                    creates = (mode is not None and any(c in mode for c in "wx")) or (
                        mode is None and flags & os.O_CREAT
                    )

                    def effect(path=path, truncates=truncates, creates=creates):
                        if truncates or (creates and not os.path.exists(path)):
                            with open(path, "wb"):  # what the open does before anything is written
                                pass

                    reached(f"open {path}", effect)
            elif event in MUTATIONS:
                dir_fd = args[1] if event in ("os.remove", "os.rmdir", "os.mkdir") and len(args) > 1 else None
                if event == "os.mkdir" and len(args) > 2:
                    dir_fd = args[2]
                path = _resolve(args[0], dir_fd if isinstance(dir_fd, int) else None)
                if path and path.startswith(root):
                    reached(f"{event} {path}")
        finally:
            busy[0] = False

    import transformers.modeling_utils as modeling_utils

    import hf_ddlm.models.sedd.convert_sedd_checkpoint as converter

    real_save_file = modeling_utils.safe_save_file

    def half_written_save_file(tensors, filename, metadata=None):
        real_save_file(tensors, filename, metadata=metadata)
        path = os.path.abspath(filename)
        if path.startswith(root):
            size = os.path.getsize(path)

            def effect():  # killed while the weights are being written: half of them on disk
                os.truncate(path, size // 2)

            reached(f"safetensors {path}", effect)

    modeling_utils.safe_save_file = converter.save_file = half_written_save_file
    torch.set_num_threads(1)
    sys.addaudithook(hook)
    save()
    report("done")


def _run_child(root: Path, kill_at: int, save) -> list[str]:
    """Fork a child that runs ``save``; kill it with SIGKILL where it stopped (if it does). Returns
    the events the child reported."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read_fd)
            _child(str(root), kill_at, write_fd, save)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    lines, buffer, deadline = [], b"", time.monotonic() + 120
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError(f"the child neither stopped nor finished: {lines}")
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            lines += [line.decode() for line in complete]
            if lines and (lines[-1].startswith("stopped") or lines[-1] == "done"):
                break
    finally:
        os.close(read_fd)
        if lines and lines[-1].startswith("stopped"):
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if not (lines and lines[-1].startswith("stopped")):
        assert status == 0 and lines[-1:] == ["done"], f"the child failed: {lines}"
    return [line.split(" ", 2)[2] for line in lines if line.startswith("event")]


def _snapshot(model) -> dict:
    return {
        "config": {
            k: v for k, v in model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")
        },
        "generation": model.generation_config.to_dict(),
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
    }


def _load(folder: Path) -> dict | None:
    try:
        return _snapshot(AutoModel.from_pretrained(folder))
    except Exception:
        return None


def _which(folder: Path, expected: dict) -> str | None:
    """'A' or 'B' when ``folder`` loads as exactly that model, else None."""
    got = _load(folder)
    if got is None:
        return None
    for name, want in expected.items():
        same = (
            got["config"] == want["config"]
            and got["generation"] == want["generation"]
            and got["weights"].keys() == want["weights"].keys()
            and all(torch.equal(got["weights"][k], want["weights"][k]) for k in want["weights"])
        )
        if same:
            return name
    return None


def _reference(model, tmp_path) -> dict:
    folder = tmp_path / "reference"
    model.save_pretrained(folder)
    snapshot = _load(folder)
    shutil.rmtree(folder)
    return snapshot


@pytest.fixture(scope="module")
def models():
    _, model_class = find_model("mdlm")
    a = tiny_model(model_class, seed=0)
    b = tiny_model(model_class, seed=1)
    b.config.note = "model B"  # a config difference that shapes do not reveal
    b.generation_config.num_inference_steps = a.generation_config.num_inference_steps + 7
    return a, b


EXTRA = {"notes.txt": "a user's notes\n", "tokenizer_config.json": '{"model_max_length": 16}\n'}


def _folder_of_a(root: Path, a, sharded: bool) -> Path:
    folder = root / "ckpt"
    a.save_pretrained(folder, **({"max_shard_size": "20KB"} if sharded else {}))
    for name, text in EXTRA.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("how", ["save_pretrained", "save_pretrained_over_shards", "export_model", "converter"])
def test_kill_9_at_every_change_leaves_the_old_or_the_new_checkpoint(tmp_path, models, how):
    a, b = models
    sharded = how == "save_pretrained_over_shards"
    pristine = _folder_of_a(tmp_path / "pristine", a, sharded)
    reference_b = tmp_path / "b"
    b.save_pretrained(reference_b)
    expected = {"A": _load(pristine), "B": _load(reference_b)}
    assert all(torch.equal(expected["A"]["weights"][k], v) for k, v in a.state_dict().items())
    assert all(torch.equal(expected["B"]["weights"][k], v) for k, v in b.state_dict().items())
    assert expected["B"]["config"]["note"] == "model B" and "note" not in expected["A"]["config"]
    if sharded:
        assert any("-of-0000" in p.name for p in pristine.iterdir())

    def save_b(folder):
        if how == "export_model":
            return lambda: export_model(b, folder, overwrite=True)
        if how == "converter":  # the converters' writer (SEDD and MDLM)
            return lambda: write_checkpoint(folder, b.config, b.state_dict(), b.generation_config, overwrite=True)
        return lambda: b.save_pretrained(folder)

    def fresh(k):
        root = (tmp_path / f"run{k}").resolve()
        shutil.copytree(pristine.parent, root)
        return root, root / "ckpt"

    root, folder = fresh("all")
    events = _run_child(root, -1, save_b(folder))  # a save that is not killed: B, and the list of changes
    assert _which(folder, expected) == "B"
    assert len(events) >= 5, events
    seen = set()
    for k, event in enumerate(events):
        root, folder = fresh(k)
        _run_child(root, k, save_b(folder))
        which = _which(folder, expected)
        assert which in ("A", "B"), f"killed at change {k} ({event}): the folder loads as neither A nor B"
        seen.add(which)
        if how.startswith(
            "save_pretrained"
        ):  # a save keeps the folder's other files; an overwriting export replaces them
            for name, text in EXTRA.items():
                assert (folder / name).read_text() == text, f"killed at change {k} ({event}): {name} lost"
        # what else a kill may leave: hidden staging siblings only
        assert {p.name for p in root.iterdir()} - {"ckpt"} <= {
            p.name for p in root.iterdir() if p.name.startswith(f".ckpt.{atomic.STAGING}")
        }
        shutil.rmtree(root)
    assert seen == {"A", "B"}


def test_the_save_keeps_other_files_and_drops_stale_shards(tmp_path, models):
    a, b = models
    folder = _folder_of_a(tmp_path, a, sharded=True)
    (folder / "README.md").write_text("# my own card\n")
    b.save_pretrained(folder)
    names = {p.name for p in folder.iterdir()}
    assert not any("-of-0000" in n for n in names), names  # as transformers: stale shards go
    assert {"model.safetensors", "config.json", "notes.txt", "tokenizer_config.json", "modeling_mdlm.py"} <= names
    assert (folder / "README.md").read_text() == "# my own card\n"  # a user's card is kept
    assert not [p for p in tmp_path.iterdir() if p.name != "ckpt"]  # no staging folder left
    assert torch.equal(
        load_file(folder / "model.safetensors")["backbone.vocab_embed.embedding"],
        b.state_dict()["backbone.vocab_embed.embedding"],
    )


@pytest.mark.parametrize("sharded", [False, True])
def test_without_an_atomic_swap_the_files_move_in_one_by_one(tmp_path, models, monkeypatch, sharded):
    a, b = models
    folder = _folder_of_a(tmp_path, a, sharded=sharded)
    monkeypatch.setattr(atomic, "_exchange", lambda x, y: False)
    b.save_pretrained(folder)
    assert _which(folder, {"B": _reference(b, tmp_path)}) == "B"
    assert all((folder / name).read_text() == text for name, text in EXTRA.items())
    assert not [p for p in tmp_path.iterdir() if p.name != "ckpt"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".") or "-of-0000" in p.name]


def test_a_parent_that_cannot_be_written_stages_inside_the_folder(tmp_path, models, monkeypatch):
    a, b = models
    folder = _folder_of_a(tmp_path, a, sharded=False)
    real_mkdtemp = atomic.tempfile.mkdtemp

    def mkdtemp(dir=None, **kwargs):  # the parent refuses new entries (as a read-only folder would)
        if Path(dir) == folder.parent:
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkdtemp(dir=dir, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", mkdtemp)
    b.save_pretrained(folder)
    assert _which(folder, {"B": _reference(b, tmp_path)}) == "B"
    assert all((folder / name).read_text() == text for name, text in EXTRA.items())
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_write_file_replaces_whole_and_keeps_the_mode(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")
    target.chmod(0o640)
    atomic.write_file(target, json.dumps({"a": 1}))
    assert json.loads(target.read_text()) == {"a": 1} and (target.stat().st_mode & 0o777) == 0o640
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("the writer failed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_a_save_into_a_symlinked_folder_replaces_its_target(tmp_path, models):
    a, b = models
    folder = _folder_of_a(tmp_path, a, sharded=False)
    link = tmp_path / "link"
    link.symlink_to(folder, target_is_directory=True)
    b.save_pretrained(link)
    assert link.is_symlink() and _which(folder, {"B": _reference(b, tmp_path)}) == "B"


def test_a_save_into_the_working_directory(tmp_path, models, monkeypatch):
    a, b = models
    folder = _folder_of_a(tmp_path, a, sharded=False)
    monkeypatch.chdir(folder)
    b.save_pretrained(".")
    assert Path(os.getcwd()) == folder.resolve() and Path("notes.txt").is_file()
    assert _which(folder, {"B": _reference(b, tmp_path)}) == "B"
