"""The comparison harness (``hf-ddlm compare``): every method and an autoregressive baseline trained
on the same text, tokenizer, token budget, optimiser and schedule, then scored alike (validation
NLL / NELBO with standard errors, speed, sample quality) into a table and a plot. Resumable."""

from .builders import (
    DIFFUSION,
    LABELS,
    ar_token_nll,
    build_model,
    generate_samples,
    generative_perplexity,
    has_bound,
    is_autoregressive,
    method_label,
    row_bound,
    training_loss,
    unigram_entropy,
)
from .checkpoint import load_checkpoint, save_checkpoint
from .data import SplitData, batch_indices, load_split
from .evaluation import final_bound, method_samples
from .plot import draw_curves
from .presets import METHODS, PRESETS, CompareSettings, check_resumable, preset
from .report import GPU_FLAGS, build_report, describe, docs_markdown, machine, table, write_report
from .runner import run_comparison, run_method
from .training import lr_factor, make_optimizer, subset_bound, train_method

__all__ = [
    "DIFFUSION",
    "GPU_FLAGS",
    "LABELS",
    "METHODS",
    "PRESETS",
    "CompareSettings",
    "SplitData",
    "ar_token_nll",
    "batch_indices",
    "build_model",
    "build_report",
    "check_resumable",
    "describe",
    "docs_markdown",
    "draw_curves",
    "final_bound",
    "generate_samples",
    "generative_perplexity",
    "has_bound",
    "is_autoregressive",
    "load_checkpoint",
    "load_split",
    "lr_factor",
    "machine",
    "make_optimizer",
    "method_label",
    "method_samples",
    "preset",
    "row_bound",
    "run_comparison",
    "run_method",
    "save_checkpoint",
    "subset_bound",
    "table",
    "train_method",
    "training_loss",
    "unigram_entropy",
    "write_report",
]
