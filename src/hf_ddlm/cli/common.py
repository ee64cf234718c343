"""What the subcommands share once their arguments are parsed: loading a model and its tokenizer,
reading text files into token rows, and scoring rows with the NELBO."""

from __future__ import annotations

import math
import sys
from pathlib import Path

PROG = "hf-ddlm"


class CLIError(ValueError):
    """A user error: printed as one line, exit status 2."""


def device_name(name: str | None) -> str:
    """``name``, or ``cuda`` when a GPU is available, else ``cpu``."""
    import torch

    if name:
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(path, device=None, dtype=None):
    import torch
    from transformers import AutoModel

    import hf_ddlm  # noqa: F401  (registers the models)

    if not (Path(path) / "config.json").is_file():
        raise CLIError(f"{path} holds no config.json: pass a folder written by save_pretrained or 'hf-ddlm train'")
    kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
    model = AutoModel.from_pretrained(path, **kwargs)
    return model.to(device_name(device)).eval()


def load_tokenizer(path, model_path=None):
    from transformers import AutoTokenizer

    source = path or model_path
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise CLIError(
            f"no tokenizer could be loaded from {source} ({str(error).splitlines()[0]}); pass --tokenizer PATH"
        ) from None


def read_texts(files) -> list[str]:
    """The non-empty UTF-8 texts of ``files`` (one document each)."""
    texts = []
    for f in files:
        text = Path(f).read_text(encoding="utf-8")
        if text.strip():
            texts.append(text)
    if not texts:
        raise CLIError("the text files are empty")
    return texts


def chunk_rows(texts, tokenizer, seq_len):
    """``texts`` as a dataset of rows of exactly ``seq_len`` tokens (:func:`hf_ddlm.data.chunk_dataset`)."""
    from ..data import chunk_dataset

    return chunk_dataset(texts, tokenizer, seq_len)


def read_token_rows(files, tokenizer, seq_len):
    """The text of ``files`` as token rows, one tensor [N, seq_len]."""
    import torch

    rows = chunk_rows(read_texts(files), tokenizer, seq_len)
    return torch.stack([rows[i]["input_ids"] for i in range(len(rows))])


def score_rows(model, ids, batch_size, num_samples, seed, progress=True):
    """Total NELBO (nats), tokens and sequences of ``ids`` [N, L], with a progress bar."""
    import torch
    from tqdm.auto import tqdm

    generator = torch.Generator(device=model.device).manual_seed(seed)
    total = 0.0
    batches = range(0, ids.shape[0], batch_size)
    for start in tqdm(batches, desc="NELBO", unit="batch", disable=not progress, file=sys.stderr):
        chunk = ids[start : start + batch_size].to(model.device)
        with torch.no_grad():
            total += float(model.negative_elbo(chunk, num_samples=num_samples, generator=generator).double().sum())
    tokens = int(ids.numel())
    # the perplexity bound exp(NELBO / tokens), and the same in nats and bits per token
    return {
        "perplexity_bound": math.exp(total / tokens),
        "nats_per_token": total / tokens,
        "bits_per_token": total / tokens / math.log(2),
        "nelbo": total,
        "num_tokens": tokens,
        "num_sequences": int(ids.shape[0]),
        "num_samples": num_samples,
        "seq_len": int(ids.shape[1]),
    }


__all__ = [
    "PROG",
    "CLIError",
    "chunk_rows",
    "device_name",
    "load_model",
    "load_tokenizer",
    "read_texts",
    "read_token_rows",
    "score_rows",
]
