"""``hf-ddlm compare``: train every method and an autoregressive baseline under equal conditions
and write the table and plot (:mod:`hf_ddlm.comparison`)."""

from __future__ import annotations

from .arguments import positive_int, torch_device

# flags that override a preset's field (name, type, help); None: the preset's value
OVERRIDES = [
    ("text_file", str, "a UTF-8 text file instead of the offline Shakespeare plays"),
    ("max_chars", positive_int, "characters of text to read"),
    ("tokenizer", str, "bpe (trained on the text) or gpt2 (GPT-2's + mask, 50258 ids)"),
    ("vocab_size", positive_int, "BPE vocabulary, mask token included"),
    ("seq_len", positive_int, "tokens per row (a multiple of 16)"),
    ("hidden_size", positive_int, "width of every model"),
    ("num_layers", positive_int, "depth of every model"),
    ("num_heads", positive_int, "attention heads of every model"),
    ("cond_dim", positive_int, "width of the DiT's time conditioning"),
    ("steps", positive_int, "optimiser steps per method (the token budget: steps x batch x seq_len)"),
    ("batch_size", positive_int, "rows per step"),
    ("lr", float, "peak learning rate"),
    ("warmup_steps", int, "linear warmup steps (then cosine decay)"),
    ("min_lr_ratio", float, "the rate at the last step, as a fraction of the peak"),
    ("d3pm_timesteps", positive_int, "D3PM's T"),
    ("ctmc_graph", str, "CTMC's graph: uniform (tau-LDR's) or absorbing"),
    ("eval_every", positive_int, "steps between evaluations of the validation subset (the plot)"),
    ("eval_subset", positive_int, "rows of the validation subset"),
    ("eval_max_rows", positive_int, "cap on the final evaluation's rows (default: the whole split)"),
    ("mc_samples", positive_int, "Monte-Carlo draws of t per validation row in the final bound"),
    ("num_samples", positive_int, "samples per method for sample quality"),
    ("sample_steps", positive_int, "denoising steps per sample"),
    ("checkpoint_every", positive_int, "steps between checkpoints"),
    ("seed", int, "seeds the split's subset, the initialisation, training and sampling"),
    ("threads", positive_int, "torch intra-op threads"),
]


def add_parser(subparsers) -> None:
    from ..comparison import METHODS, PRESETS

    p = subparsers.add_parser(
        "compare",
        help="train every method and an AR baseline alike; table + plot",
        description="Train SEDD (absorb, uniform), MDLM, BD3-LM (4, 16), D3PM, CTMC, CSM and an autoregressive "
        "baseline on the same text, tokenizer, budget, optimiser and schedule; write results.md, results.json "
        "and comparison.png into --output-dir. Resumable with --resume.",
    )
    p.add_argument("--preset", choices=list(PRESETS), default="small", help="tiny: CI (minutes); small: ~1 CPU hour")
    p.add_argument("--output-dir", required=True, help="the run's folder (checkpoints, models, report)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), metavar="METHOD",
                   help=f"a subset of the methods: {', '.join(METHODS)} (default: all)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    p.add_argument("--docs", nargs="?", const="docs", default=None, metavar="DIR",
                   help="also write DIR/comparison.{md,json,png} (default DIR: docs)")  # fmt: skip
    p.add_argument("--device", type=torch_device, default="cpu", help="cpu, cuda, ...")
    for name, kind, text in OVERRIDES:
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=text)
    p.set_defaults(func=run)


def settings_from_args(args):
    from ..comparison import preset

    overrides = {name: getattr(args, name) for name, _, _ in OVERRIDES if getattr(args, name) is not None}
    if args.methods:
        overrides["methods"] = tuple(dict.fromkeys(args.methods))
    overrides["device"] = args.device
    return preset(args.preset, **overrides)


def run(args) -> int:
    from transformers.utils import logging as hf_logging

    from ..comparison import run_comparison

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    settings = settings_from_args(args)
    run_comparison(
        settings, args.output_dir, resume=args.resume, docs_dir=args.docs, log=lambda s: print(s, flush=True)
    )
    print(f"wrote {args.output_dir}/results.md, results.json, comparison.png")
    return 0


__all__ = ["OVERRIDES", "add_parser", "run", "settings_from_args"]
