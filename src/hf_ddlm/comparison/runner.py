"""``run_comparison``: every method in turn (train, evaluate, sample), then the report.

The output folder::

    settings.json                    what the run is (a resumed run must match it)
    tokenizer/                       the shared BPE tokenizer
    runs/<method>/checkpoint/        the resumable state while the method trains
    runs/<method>/model/             the trained model (save_pretrained, safetensors)
    runs/<method>/result.json        its numbers and samples: a method with one is not retrained
    results.md, results.json, comparison.png

A killed run started again with ``resume=True`` skips the finished methods and continues the
interrupted one from its last checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..export.atomic import replace_folder, write_file
from .builders import method_label
from .data import load_split
from .evaluation import final_bound, method_samples
from .presets import check_resumable
from .report import write_report
from .training import train_method


def _prepare_folder(settings, output_dir: Path, resume: bool) -> None:
    saved = output_dir / "settings.json"
    if saved.is_file():
        if not resume:
            raise ValueError(f"{output_dir} already holds a comparison run: pass --resume to continue it")
        check_resumable(json.loads(saved.read_text()), settings)
    elif output_dir.exists() and any(output_dir.iterdir()) and not resume:
        raise ValueError(f"output_dir {output_dir} exists and is not empty; choose a new folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    write_file(saved, json.dumps(settings.to_dict(), indent=2) + "\n")


def run_method(method, settings, data, output_dir: Path, log=print, stop_after=None) -> dict | None:
    """Train, evaluate and sample one method; returns its result (None if stopped at step
    ``stop_after``, which simulates a killed run)."""
    run_dir = output_dir / "runs" / method
    done = run_dir / "result.json"
    if done.is_file():
        log(f"[{method}] finished before: not retrained")
        return json.loads(done.read_text())
    model, state = train_method(method, settings, data, run_dir, log=log, stop_after=stop_after)
    if state["step"] < settings.steps:
        return None
    start = time.perf_counter()
    bound = final_bound(model, data.validation, settings)
    samples = method_samples(model, settings)
    eval_seconds = time.perf_counter() - start
    tokens = settings.steps * settings.tokens_per_step
    result = {
        "method": method,
        "label": method_label(method, settings),
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": settings.steps,
        "tokens": tokens,
        "train_seconds": state["train_seconds"],
        "tokens_per_second": tokens / state["train_seconds"],
        "eval_seconds": eval_seconds,
        "final_train_loss": state["last_loss"],
        "validation": bound,
        "history": state["history"],
        "samples": samples.tolist(),
        "sample_texts": [data.tokenizer.decode(row) for row in samples[:3].tolist()],
    }
    with replace_folder(run_dir / "model", carry_over=False) as stage:
        model.save_pretrained(stage)
    write_file(done, json.dumps(result) + "\n")
    nats = bound["nats_per_token"]
    log(
        f"[{method}] done: {state['train_seconds']:.0f} s training, "
        + (f"validation {nats:.3f} nats/token (+- {bound['stderr']:.3f})" if nats is not None else "no bound")
    )
    return result


def run_comparison(settings, output_dir, resume: bool = False, docs_dir=None, log=print, stop_after=None) -> dict:
    """Run (or continue) the comparison in ``output_dir``; returns the report (results.json), or {}
    when ``stop_after`` ({method: step}, for tests) stopped a method early."""
    output_dir = Path(output_dir)
    _prepare_folder(settings, output_dir, resume)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    start = time.perf_counter()
    data = load_split(settings)
    if not (output_dir / "tokenizer").is_dir():
        with replace_folder(output_dir / "tokenizer", carry_over=False) as stage:
            data.tokenizer.save_pretrained(stage)
    log(
        f"data: {data.num_chars:,} characters, vocabulary {len(data.tokenizer)}, {data.train.shape[0]} training and "
        f"{data.validation.shape[0]} validation rows of {settings.seq_len} tokens "
        f"[{time.perf_counter() - start:.0f} s]"
    )
    order = sorted(settings.methods, key=lambda m: m != "ar")  # the AR judge first
    results = {}
    for method in order:
        result = run_method(method, settings, data, output_dir, log=log, stop_after=(stop_after or {}).get(method))
        if result is None:
            return {}
        results[method] = result
    return write_report(settings, results, data, output_dir, docs_dir=docs_dir, log=log)


__all__ = ["run_comparison", "run_method"]
