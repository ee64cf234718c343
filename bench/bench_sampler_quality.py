"""Sample quality against network calls (NFEs) for every sampler of a masked model.

One script, one machine: a small MDLM and an autoregressive judge (a `transformers` GPT-2 of the
same width and depth) are trained on the same offline Shakespeare rows with the same BPE tokenizer
(both cached under ``--cache-dir``, so a second run only samples). Then, for each sampler and several
step counts / thresholds, ``--num-samples`` unconditional sequences are drawn and scored:

* NFEs: the network calls ``generate`` reports (output reuse included: an MDLM is not time-conditioned);
* wall time of ``generate``;
* generative perplexity: exp of the judge's mean next-token NLL over the samples (lower is better,
  as in the MDLM / ReMDM papers);
* unigram entropy of the samples' tokens, in nats (a low value flags degenerate repetition), next to
  the same statistic of as many held-out data rows.

It prints the table, writes it as Markdown and JSON, and draws generative perplexity against NFEs
(one line per sampler) into a PNG.

    python bench/bench_sampler_quality.py                        # about 10 CPU minutes the first time
    python bench/bench_sampler_quality.py --train-steps 200 --judge-steps 200 --num-samples 8   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM
from hf_ddlm.data import chunk_dataset, shakespeare_text, train_bpe_tokenizer

# (label, sampler, sampler_kwargs, what varies, values, other generate options): step-budget samplers
# vary the number of steps; threshold and entropy-bounded decoding choose their own number of calls
# (the budget is then the sequence length) and vary their threshold.
STEPS = (4, 8, 16, 32, 64)
RUNS = [
    ("ancestral", "ancestral", {}, "steps", STEPS, {}),
    ("first_hitting", "first_hitting", {}, "steps", (None,), {}),
    ("confidence top_prob", "confidence", {"ordering": "top_prob"}, "steps", STEPS, {}),
    ("confidence margin (sampled)", "confidence", {"ordering": "margin", "deterministic": False}, "steps", STEPS, {}),
    ("confidence, blocks of 16", "confidence", {"ordering": "margin", "deterministic": False}, "steps", STEPS,
     {"block_length": 16}),
    ("threshold", "threshold", {}, "threshold", (0.3, 0.5, 0.7, 0.9, 0.97), {}),
    ("threshold (sampled)", "threshold", {"deterministic": False}, "threshold", (0.3, 0.5, 0.7, 0.9), {}),
    ("entropy_bounded", "entropy_bounded", {}, "gamma", (0.1, 0.5, 1.0, 2.0, 4.0), {}),
    ("remdm_cap eta=0.02", "remdm", {"remasking": "cap", "eta": 0.02}, "steps", STEPS, {}),
    ("remdm_loop", "remdm", {"remasking": "loop"}, "steps", STEPS, {}),
    ("ancestral + adaptive stop", "ancestral", {}, "steps", (32, 64),
     {"stability_threshold": 2, "confidence_threshold": 0.5}),
]  # fmt: skip


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--train-steps", type=int, default=1500, help="MDLM optimizer steps")
    p.add_argument("--judge-steps", type=int, default=1500, help="AR judge optimizer steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-samples", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default="outputs/bench_sampler_quality")
    p.add_argument("--out", default="docs/sampler_quality", help="writes OUT.md, OUT.json and OUT.png")
    p.add_argument("--only", nargs="*", help="labels of the runs to keep (default: all)")
    return p.parse_args(argv)


def train(model, rows, steps, batch_size, lr, seed, loss_fn):
    """AdamW with linear warm-up and decay; returns the last loss."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min((k + 1) / warm, max(0.1, 1 - k / steps)))
    model.train()
    loss = float("nan")
    for step in range(steps):
        batch = rows[torch.randint(0, rows.shape[0], (batch_size,), generator=g)]
        loss = loss_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        if step % max(1, steps // 5) == 0:
            print(f"  step {step:5d}  loss {loss.item():.3f}", flush=True)
    model.eval()
    return float(loss.detach())


def cached(path: Path, build, fit):
    """The model saved at ``path``, or a fresh one trained by ``fit`` and saved there."""
    if (path / "config.json").exists():
        return type(build()).from_pretrained(path), False
    model = build()
    fit(model)
    model.save_pretrained(path)
    return model, True


@torch.no_grad()
def judge_nll(judge, ids):
    """Mean next-token NLL (nats) of ``ids`` [N, L] under the AR judge."""
    return float(judge(input_ids=ids, labels=ids).loss)


def unigram_entropy(ids, vocab_size):
    counts = torch.bincount(ids.flatten(), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def draw_plot(rows, reference_ppl, path):
    """Generative perplexity against NFEs (log x), one line per sampler; Pillow only."""
    from PIL import Image, ImageDraw

    width, height, left, right, top, bottom = 900, 560, 70, 250, 30, 50
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    points = [(r["nfe"], r["gen_ppl"]) for r in rows if r["nfe"] > 0]
    x_lo, x_hi = math.log(min(p[0] for p in points)), math.log(max(p[0] for p in points))
    y_hi = max(p[1] for p in points) * 1.05
    y_lo = min(reference_ppl, min(p[1] for p in points)) * 0.9

    def xy(nfe, ppl):
        x = left + (math.log(nfe) - x_lo) / max(x_hi - x_lo, 1e-9) * (width - left - right)
        y = top + (y_hi - ppl) / (y_hi - y_lo) * (height - top - bottom)
        return x, y

    d.rectangle([left, top, width - right, height - bottom], outline="black")
    for nfe in (2, 4, 8, 16, 32, 64, 128):
        if x_lo <= math.log(nfe) <= x_hi:
            x, _ = xy(nfe, y_lo)
            d.line([x, height - bottom, x, height - bottom + 5], fill="black")
            d.text((x - 8, height - bottom + 8), str(nfe), fill="black")
    for k in range(6):
        ppl = y_lo + (y_hi - y_lo) * k / 5
        _, y = xy(math.exp(x_lo), ppl)
        d.line([left - 5, y, left, y], fill="black")
        d.text((8, y - 6), f"{ppl:.0f}", fill="black")
    d.text((left + 200, height - 20), "network calls (NFE, log scale)", fill="black")
    d.text((8, 8), "generative perplexity under the AR judge (lower is better)", fill="black")
    _, y = xy(math.exp(x_lo), reference_ppl)
    d.line([left, y, width - right, y], fill=(150, 150, 150))
    d.text((width - right + 8, y - 6), "held-out data", fill=(120, 120, 120))
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
               (227, 119, 194), (127, 127, 127), (188, 189, 34)]  # fmt: skip
    labels = list(dict.fromkeys(r["label"] for r in rows))
    for i, label in enumerate(labels):
        c = colours[i % len(colours)]
        line = sorted(xy(r["nfe"], r["gen_ppl"]) for r in rows if r["label"] == label and r["nfe"] > 0)
        if len(line) > 1:
            d.line(line, fill=c, width=2)
        for x, y in line:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=c)
        d.line([width - right + 10, top + 18 * i + 6, width - right + 30, top + 18 * i + 6], fill=c, width=3)
        d.text((width - right + 35, top + 18 * i), label, fill="black")
    img.save(path)


def main(argv=None):
    args = parse_args(argv)
    hf_logging.set_verbosity_error()
    torch.manual_seed(args.seed)
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)

    text = shakespeare_text()
    tokenizer = train_bpe_tokenizer(text, vocab_size=args.vocab_size)
    rows = chunk_dataset([text], tokenizer, args.seq_len).with_format("torch")[:]["input_ids"]
    n_eval = max(args.num_samples, rows.shape[0] // 50)
    train_rows, eval_rows = rows[:-n_eval], rows[-n_eval:]
    vocab = len(tokenizer)
    print(f"data: {train_rows.numel():,} training tokens, {n_eval} held-out rows of {args.seq_len}, vocabulary {vocab}")

    def mdlm():
        torch.manual_seed(args.seed)
        config = MDLMConfig(
            vocab_size=vocab, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, cond_dim=64,
            max_position_embeddings=args.seq_len, dropout=0.0,
        )  # fmt: skip
        return MDLMForDiffusionLM(config)

    def ar_judge():
        torch.manual_seed(args.seed)
        config = GPT2Config(vocab_size=vocab, n_positions=args.seq_len, n_embd=128, n_layer=4, n_head=4)
        config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.0
        return GPT2LMHeadModel(config)

    t0 = time.perf_counter()
    print(f"MDLM: {args.train_steps} steps")
    model, fresh = cached(
        cache / f"mdlm-{args.train_steps}",
        mdlm,
        lambda m: train(
            m, train_rows, args.train_steps, args.batch_size, 1e-3, args.seed, lambda m, b: m(labels=b).loss
        ),
    )
    model.eval()
    nelbo = float(model.negative_elbo(eval_rows, num_samples=4, generator=torch.Generator().manual_seed(0)).mean())
    print(f"  held-out NELBO {nelbo / args.seq_len:.3f} nats/token{' (trained)' if fresh else ' (cached)'}")
    print(f"AR judge: {args.judge_steps} steps")
    judge, fresh = cached(
        cache / f"judge-{args.judge_steps}",
        ar_judge,
        lambda m: train(
            m,
            train_rows,
            args.judge_steps,
            args.batch_size,
            1e-3,
            args.seed,
            lambda m, b: m(input_ids=b, labels=b).loss,
        ),
    )
    judge.eval()
    reference_ppl = math.exp(judge_nll(judge, eval_rows))
    reference_entropy = unigram_entropy(eval_rows[: args.num_samples], vocab)
    print(f"  held-out perplexity {reference_ppl:.1f}, data unigram entropy {reference_entropy:.2f} nats "
          f"[{time.perf_counter() - t0:.0f} s]")  # fmt: skip

    results = []
    for label, sampler, kwargs, varies, values, options in RUNS:
        if args.only and label not in args.only:
            continue
        for value in values:
            kw, steps = dict(kwargs), args.seq_len
            if varies == "steps" and value is not None:
                steps = value
            elif varies != "steps":
                kw[varies] = value
            start = time.perf_counter()
            out = model.generate(
                num_return_sequences=args.num_samples,
                max_length=args.seq_len,
                num_inference_steps=steps,
                sampler=sampler,
                sampler_kwargs=kw,
                seed=args.seed,
                return_dict_in_generate=True,
                **options,
            )
            seconds = time.perf_counter() - start
            ids = out.sequences
            row = {
                "label": label,
                "sampler": sampler,
                "sampler_kwargs": kw,
                "setting": f"{varies}={value}" if value is not None else "one call per token",
                "nfe": int(out.num_function_evaluations),
                "nfe_saved": int(getattr(out, "num_function_evaluations_saved", None) or 0),  # adaptive stop
                "seconds": round(seconds, 3),
                "gen_ppl": round(math.exp(judge_nll(judge, ids)), 2),
                "unigram_entropy": round(unigram_entropy(ids, vocab), 3),
            }
            results.append(row)
            print(
                f"{label:30s} {row['setting']:20s} NFE {row['nfe']:4d}  {seconds:6.2f} s  "
                f"gen PPL {row['gen_ppl']:8.1f}  entropy {row['unigram_entropy']:.2f}",
                flush=True,
            )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "machine": f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}",
        "mdlm_train_steps": args.train_steps,
        "judge_train_steps": args.judge_steps,
        "heldout_nelbo_per_token": round(nelbo / args.seq_len, 4),
        "heldout_judge_perplexity": round(reference_ppl, 2),
        "heldout_unigram_entropy": round(reference_entropy, 3),
        "num_samples": args.num_samples,
        "seq_len": args.seq_len,
    }
    Path(f"{out}.json").write_text(json.dumps({"setup": header, "results": results}, indent=1) + "\n")
    lines = [
        f"Made by `bench/bench_sampler_quality.py` ({header['machine']}): an MDLM trained {args.train_steps} steps "
        f"(held-out NELBO {header['heldout_nelbo_per_token']} nats/token), judged by a GPT-2 of the same size trained "
        f"{args.judge_steps} steps (held-out perplexity {header['heldout_judge_perplexity']}); {args.num_samples} "
        f"unconditional samples of {args.seq_len} tokens per row. Unigram entropy in nats.",
        "",
        "| sampler | setting | NFE | seconds | gen. PPL | unigram entropy |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['label']} | {r['setting']} | {r['nfe']} | {r['seconds']:.2f} | {r['gen_ppl']:.1f} | {r['unigram_entropy']:.2f} |"
            for r in results
        ),
        f"| held-out data | | | | {reference_ppl:.1f} | {reference_entropy:.2f} |",
    ]
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    draw_plot(results, reference_ppl, f"{out}.png")
    print(f"wrote {out}.md, {out}.json, {out}.png")


if __name__ == "__main__":
    main()
