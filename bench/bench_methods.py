"""D3PM, CTMC (tau-LDR) and CSM at the GPT-2 vocabulary (V = 50,258) and L = 1024 on a shallow DiT.

Prints, for each method:

* the peak memory of one training step (forward + backward), measured in a fresh process per
  configuration (CUDA: ``max_memory_allocated``; CPU: the growth of the peak RSS during the step),
  and the ratio uniform / absorbing noise (target <= 1.2). A V x V fp32 matrix alone would be
  V^2 * 4 bytes = 10.1 GB; the peaks printed are far below it, so none is built.
* the time of one sampler step over the time of one model forward (backbone + parameterization)
  that feeds it, and (forward + step) / forward (target <= 1.05): tau-leaping, predictor-corrector
  (a corrector step), D3PM ancestral, CTMC Euler and Metropolis-Hastings.

    python bench/bench_methods.py [--layers 1] [--hidden 128] [--repeats 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from memory import randomize_zero_init, training_step_peak

from hf_ddlm import CSMConfig, CSMForDiffusionLM, CTMCConfig, CTMCForDiffusionLM, D3PMConfig, D3PMForDiffusionLM
from hf_ddlm.samplers import get_sampler

METHODS = {
    "d3pm": (D3PMConfig, D3PMForDiffusionLM, {"num_timesteps": 1000}),
    "ctmc": (CTMCConfig, CTMCForDiffusionLM, {}),
    "csm": (CSMConfig, CSMForDiffusionLM, {}),
}
TRAIN_CASES = [
    ("d3pm", "absorbing", {}),
    ("d3pm", "uniform", {}),
    ("ctmc", "absorbing", {}),
    ("ctmc", "uniform", {}),
    ("ctmc", "absorbing", {"ctmc_estimator": "exact"}),
    ("ctmc", "uniform", {"ctmc_estimator": "exact"}),
    ("csm", "uniform", {}),
]


def build(method, graph, args, **extra):
    config_class, model_class, defaults = METHODS[method]
    config = config_class(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        cond_dim=64,
        max_position_embeddings=args.length,
        dropout=0.0,
        graph=graph,
        **{**defaults, **extra},
    )
    torch.manual_seed(0)
    model = model_class(config).to(args.device)
    return randomize_zero_init(model)


def child(args):
    """One training step of one configuration, in this (fresh) process; prints JSON."""
    method, graph, extra = args.child, args.graph, json.loads(args.extra)
    model = build(method, graph, args, **extra).train()
    print(json.dumps({"peak": training_step_peak(model, args.vocab, args.batch, args.length, args.device)}))


def train_memory(args):
    rows = {}
    for method, graph, extra in TRAIN_CASES:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            method,
            "--graph",
            graph,
            "--extra",
            json.dumps(extra),
            "--layers",
            str(args.layers),
            "--hidden",
            str(args.hidden),
            "--heads",
            str(args.heads),
            "--vocab",
            str(args.vocab),
            "--length",
            str(args.length),
            "--batch",
            str(args.batch),
            "--device",
            args.device,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows[(method, graph, json.dumps(extra))] = json.loads(out)["peak"]
        print(
            f"train step peak  {method:5s} {graph:9s} {str(extra or ''):34s} "
            f"{rows[(method, graph, json.dumps(extra))] / 2**20:9.0f} MiB",
            flush=True,
        )
    for method, extra in (("d3pm", {}), ("ctmc", {}), ("ctmc", {"ctmc_estimator": "exact"})):
        key = json.dumps(extra)
        ratio = rows[(method, "uniform", key)] / rows[(method, "absorbing", key)]
        print(f"peak memory uniform / absorbing  {method} {str(extra or '')}: {ratio:.3f}  (target <= 1.2)", flush=True)
    vv = args.vocab**2 * 4
    print(
        f"largest peak {max(rows.values()) / 2**30:.2f} GiB vs one V x V fp32 matrix {vv / 2**30:.1f} GiB", flush=True
    )


def median_time(fn, repeats, device):
    times = []
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


@torch.no_grad()
def sampler_steps(args):
    cases = [
        ("d3pm", "absorbing", "d3pm_ancestral", {}, (500, 499)),
        ("d3pm", "uniform", "d3pm_ancestral", {}, (500, 499)),
        ("ctmc", "uniform", "tau_leaping", {}, (0.5, 0.49)),
        ("ctmc", "absorbing", "tau_leaping", {}, (0.5, 0.49)),
        ("ctmc", "uniform", "ctmc_euler", {}, (0.5, 0.49)),
        ("ctmc", "uniform", "predictor_corrector", {"num_corrector_steps": 1}, (0.5, 0.5)),
        ("ctmc", "absorbing", "predictor_corrector", {"num_corrector_steps": 1}, (0.5, 0.5)),
        ("csm", "uniform", "metropolis_hastings", {}, (1.0, 1.0)),
    ]
    for method, graph, name, kwargs, (t, s) in cases:
        model = build(method, graph, args).eval()
        sampler = get_sampler(name, model.graph, model.schedule, **kwargs)
        sampler.set_timesteps(100 if method == "ctmc" else 10, 1e-3, args.device)
        if method == "d3pm":
            t, s = t / 1000, s / 1000
        g = torch.Generator(device=args.device).manual_seed(0)
        x = model.graph.sample_prior((args.batch, args.length), args.device, g)
        if graph == "absorbing":  # a half-masked canvas
            x = torch.where(
                torch.rand(x.shape, generator=g, device=args.device) < 0.5,
                x,
                torch.randint(0, args.vocab - 1, x.shape, generator=g, device=args.device),
            )
        tt = torch.full((args.batch,), t, device=args.device)
        ss = torch.full((args.batch,), s, device=args.device)
        out = model(input_ids=x, timesteps=tt).logits
        forward = median_time(lambda: model(input_ids=x, timesteps=tt).logits, args.repeats, args.device)
        step = median_time(lambda: sampler.step(out, x, tt, ss, g), args.repeats, args.device)
        print(
            f"sampler {name:20s} {method}/{graph:9s} forward {forward * 1e3:8.1f} ms  step {step * 1e3:8.1f} ms  "
            f"step/forward {step / forward:5.2f}  "
            f"(forward+step)/forward {(forward + step) / forward:5.2f}  (target <= 1.05)",
            flush=True,
        )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=50258)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", choices=["memory", "samplers"], default=None)
    p.add_argument("--child", default=None)
    p.add_argument("--graph", default="uniform")
    p.add_argument("--extra", default="{}")
    args = p.parse_args()
    if args.child:
        return child(args)
    print(
        f"V = {args.vocab}, L = {args.length}, batch {args.batch}, "
        f"DiT {args.layers} x {args.hidden}, device {args.device}"
    )
    if args.only in (None, "memory"):
        train_memory(args)
    if args.only in (None, "samplers"):
        sampler_steps(args)


if __name__ == "__main__":
    main()
