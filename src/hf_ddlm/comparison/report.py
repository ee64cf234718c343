"""The report: results.json, results.md (the table) and comparison.png, from the methods' results;
with ``docs_dir`` also docs/comparison.{md,json,png} (the table with the text around it)."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import torch

from ..export.atomic import write_file
from .builders import generative_perplexity, unigram_entropy
from .plot import draw_curves

GPU_FLAGS = (
    "hf-ddlm compare --preset small --output-dir runs/owt --device cuda --text-file owt_train.txt "
    "--max-chars 2000000000 --tokenizer gpt2 --seq-len 1024 --hidden-size 768 --num-layers 12 --num-heads 12 "
    "--cond-dim 128 --steps 1000000 --batch-size 512 --lr 3e-4 --warmup-steps 2500 --eval-every 10000 "
    "--checkpoint-every 5000 --eval-subset 256 --mc-samples 8 --num-samples 64 --sample-steps 1000"
)


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _judge(output_dir: Path, device: str):
    folder = output_dir / "runs" / "ar" / "model"
    if not (folder / "config.json").is_file():
        return None
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(folder).to(device).eval()


def build_report(settings, results: dict, data, output_dir: Path) -> dict:
    judge = _judge(output_dir, settings.device)
    reference = data.validation[: settings.num_samples]
    rows = []
    for r in results.values():
        samples = torch.tensor(r["samples"])
        row = {k: v for k, v in r.items() if k not in ("samples", "history")}
        row["gen_ppl"] = generative_perplexity(judge, samples) if judge is not None else None
        row["unigram_entropy"] = unigram_entropy(samples)
        row["history"] = [
            {k: p[k] for k in ("step", "tokens", "train_seconds", "train_loss", "subset_nats_per_token")}
            for p in r["history"]
        ]
        rows.append(row)
    return {
        "settings": settings.to_dict(),
        "machine": machine(),
        "data": {
            "characters": data.num_chars,
            "train_rows": int(data.train.shape[0]),
            "validation_rows": int(data.validation.shape[0]),
            "eval_subset_rows": int(data.eval_subset.shape[0]),
            "vocabulary": len(data.tokenizer),
            "validation_gen_ppl": generative_perplexity(judge, reference) if judge is not None else None,
            "validation_unigram_entropy": unigram_entropy(reference),
        },
        "methods": rows,
    }


def _f(x, spec=".3f"):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def table(report: dict) -> str:
    lines = [
        "| method | parameters | validation nats/token | s.e. (MC s.e.) | perplexity | train s | tokens/s "
        "| gen. PPL (AR) | unigram entropy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["methods"]:
        v = r["validation"]
        if v["nats_per_token"] is None:
            nats, se, ppl = "no bound (CSM: the concrete score is unnormalised)", "n/a", "n/a"
        else:
            exact = r["method"] == "ar"
            nats = f"{_f(v['nats_per_token'])}" + (" (exact NLL)" if exact else " (NELBO, <=)")
            se = f"{_f(v['stderr'], '.4f')} ({_f(v['mc_stderr'], '.4f')})"
            ppl = ("" if exact else "<= ") + _f(v["perplexity"], ".2f")
        lines.append(
            f"| {r['label']} | {r['parameters'] / 1e6:.2f}M | {nats} | {se} | {ppl} | {r['train_seconds']:.{0 if r['train_seconds'] >= 100 else 1}f} "
            f"| {r['tokens_per_second']:.0f} | {_f(r['gen_ppl'], '.1f')} | {_f(r['unigram_entropy'], '.2f')} |"
        )
    d = report["data"]
    lines.append(
        f"| (validation text) | | | | | | | {_f(d['validation_gen_ppl'], '.1f')} | {_f(d['validation_unigram_entropy'], '.2f')} |"
    )
    return "\n".join(lines)


def describe(report: dict) -> str:
    s, m, d = report["settings"], report["machine"], report["data"]
    budget = s["steps"] * s["batch_size"] * s["seq_len"]
    return f"""Preset `{s["preset"]}`: every method trained on the same {d["train_rows"]:,} rows of {s["seq_len"]} tokens \
({d["characters"]:,} characters of {"the offline Shakespeare plays" if s["text_file"] is None else "`" + Path(s["text_file"]).name + "`"}, \
{"GPT-2's tokenizer" if s["tokenizer"] == "gpt2" else "byte-level BPE"} of {d["vocabulary"]} tokens with the mask token last), {s["steps"]} steps of {s["batch_size"]} rows \
({budget:,} tokens per method), AdamW (lr {s["lr"]:g}, betas {tuple(s["betas"])}, weight decay {s["weight_decay"]:g}, \
gradient norm clipped at {s["max_grad_norm"]:g}), {s["warmup_steps"]} warmup steps then cosine decay to \
{s["min_lr_ratio"]:g} x lr, the same data order and initialisation seed ({s["seed"]}). Diffusion models: one DiT, \
{s["num_layers"]} layers, width {s["hidden_size"]}, {s["num_heads"]} heads, conditioning width {s["cond_dim"]}; the AR \
baseline: a `transformers` LlamaForCausalLM of the same depth, width, heads and vocabulary (MLP 4x), reading each row after a \
beginning-of-text token so that all {s["seq_len"]} tokens are scored. D3PM: absorbing noise, T = {s["d3pm_timesteps"]}; \
CTMC: tau-LDR's continuous-time ELBO on the {s["ctmc_graph"]} graph; BD3-LM L' = 4 and 16; SEDD absorb / uniform with a \
per-token mean loss.

Machine: {m["platform"]}, {m["cpu_count"]} CPU(s), {m["torch_threads"]} torch thread(s), torch {m["torch"]}, \
device `{s["device"]}`{" (" + m["cuda"] + ")" if m["cuda"] else ""}; load average at the end {m["load_average"]}.

Columns: *validation nats/token* on the {d["validation_rows"]} validation rows: the AR model's exact NLL; the diffusion \
models' NELBO (`model.negative_elbo`), {s["mc_samples"]} Monte-Carlo draws of t per row (an upper bound on -log p in \
expectation; its exp bounds the perplexity). *s.e.*: the standard error std_i(row mean) / sqrt(N) / L, over the \
validation rows and the Monte-Carlo draws; *MC s.e.*: sqrt(mean_i var_s / (S N)) / L, the Monte-Carlo part alone (for \
this fixed split). *train s*, *tokens/s*: training steps only (evaluation and checkpoints excluded). *gen. PPL*: \
{s["num_samples"]} unconditional samples of {s["seq_len"]} tokens per method ({s["sample_steps"]} denoising steps, \
temperature 1; the AR model samples ancestrally) scored by the trained AR model, exp(mean NLL per token); *unigram \
entropy*: the entropy (nats) of each sample's own token histogram, averaged; the last row scores as many validation rows. \
The plot shows the bound on a fixed subset of {d["eval_subset_rows"]} validation rows (one fixed-seed draw per row) \
every {s["eval_every"]} steps."""


def write_report(settings, results: dict, data, output_dir, docs_dir=None, log=print) -> dict:
    output_dir = Path(output_dir)
    report = build_report(settings, results, data, output_dir)
    curves = {
        r["label"]: [
            (p["tokens"], p["subset_nats_per_token"]) for p in r["history"] if p["subset_nats_per_token"] is not None
        ]
        for r in report["methods"]
    }
    title = "validation NLL (AR) / NELBO (diffusion), nats per token, on the fixed validation subset"
    markdown = f"# Comparison of the methods\n\n{describe(report)}\n\n{table(report)}\n"
    targets = [(output_dir, "results")] + ([(Path(docs_dir), "comparison")] if docs_dir is not None else [])
    for folder, stem in targets:
        folder.mkdir(parents=True, exist_ok=True)
        text = markdown
        if stem == "comparison":
            text = docs_markdown(report, markdown)
        write_file(folder / f"{stem}.md", text)
        write_file(folder / f"{stem}.json", json.dumps(report, indent=1) + "\n")
        draw_curves(curves, folder / f"{stem}.png", title)
    log(table(report))
    return report


def _printable(text: str) -> str:
    """A sample for a Markdown code block: control characters (a stray escape byte) as U+FFFD."""
    return "".join(c if c.isprintable() or c == "\n" else "\ufffd" for c in text.strip()).replace("`", "'")


def docs_markdown(report: dict, markdown: str) -> str:
    samples = "\n\n".join(
        f"**{r['label']}**\n\n```\n{_printable(r['sample_texts'][0])}\n```"
        for r in report["methods"]
        if r["sample_texts"]
    )
    return f"""{markdown}
![validation bound against tokens seen](comparison.png)

## How to run it

`hf-ddlm compare --preset small --output-dir runs/compare` (or `python bench/compare_methods.py ...`, the same
options). A killed run continues with `--resume`: finished methods are not retrained, the interrupted one continues
from its last checkpoint (every `--checkpoint-every` steps). `--methods ar mdlm` runs a subset; every setting of a
preset can be overridden by a flag.

* `tiny` (CI): 2 layers of width 32, sequences of 32, 30 steps: a minute or two on 2 cores; every code path, no
  meaningful numbers.
* `small`: 4 layers of width 128, sequences of 128 tokens, 800 steps of 16 rows (1.6M tokens per method), one
  torch thread: calibrated to finish in about 50 minutes on 2 idle CPU cores. Calibration (one training step of
  16 x 128 tokens, forward + backward + AdamW, one thread, seconds; near idle / under a load average of 6.4 on
  the 2 cores): AR 0.24 / 0.58, SEDD absorb 0.22 / 0.55, SEDD uniform 0.25 / 0.52, MDLM 0.25 / 0.48, BD3-LM 4
  0.53 / 1.20, BD3-LM 16 0.50 / 1.17, D3PM 0.50 / 0.90, CTMC 0.27 / 0.59, CSM 0.49 / 1.06; all nine 3.25 / 7.05
  s per step, so 800 steps take about 2,600 s idle. The rest, measured with `--steps 4` under a load average of
  4-6: data preparation 17 s, then per method 16-50 s of final evaluation (331 validation rows x 4 Monte-Carlo
  draws) and sampling (16 samples of 128 steps), 400 s in all for the nine methods, plus the subset evaluations
  (64 rows every 50 steps, about 1 s each): about 48 minutes idle, about 100 minutes under that load (pass
  `--steps 450` to fit an hour under that load). Two torch threads on a loaded 2-core machine were 4x slower than one (they
  contend), hence one thread.
* The papers' scale (OpenWebText or LM1B, L = 1024, 12 layers of width 768, about 1M steps) is a matter of flags, on
  a GPU, e.g.:

```
{GPU_FLAGS}
```

(`--text-file`: a UTF-8 dump of the corpus, OpenWebText or LM1B, read into memory up to `--max-chars`;
`--tokenizer gpt2`: GPT-2's tokenizer with the mask token as id 50257, the papers' vocabulary; the papers' own
runs also differ in using 1024-token packed rows of the whole corpus, EMA weights and, for MDLM/SEDD, dropout 0.1).

## One sample per method

{samples}
"""


__all__ = ["GPU_FLAGS", "build_report", "describe", "docs_markdown", "machine", "table", "write_report"]
