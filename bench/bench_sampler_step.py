"""One sampler step of ``generate`` over one bare backbone forward.

Ours: the model call of a denoising step (``model(input_ids=x_t, timesteps=t).logits``: input
checks, schedule, parameterization) followed by ``sampler.step`` (rates / posterior and the
categorical draw over [B, L, V]). Baseline: ``model.backbone(x_t, sigma)`` on the same state.
The ratio is the cost of everything a step adds to the network; target <= 1.03. Samplers:
``analytic`` and ``euler`` (SEDD, log-score) and ``ancestral`` (MDLM, log-probs).

The default is a 1-layer, 128-wide backbone at the GPT-2 vocabulary and L = 1024, with half of the
positions masked (t = 0.5): the [B, L, V] work dominates, the worst case for that overhead.
``--layers 12 --hidden 768 --heads 12`` is the published size.

    python bench/bench_sampler_step.py [--sampler analytic|euler|ancestral|all] [--repeats 3] ...
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM, SEDDConfig, SEDDForDiffusionLM
from hf_ddlm.samplers import get_sampler

SAMPLER_MODEL = {"analytic": "sedd", "euler": "sedd", "ancestral": "mdlm"}
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def build(kind, args):
    config_class, model_class = {"mdlm": (MDLMConfig, MDLMForDiffusionLM), "sedd": (SEDDConfig, SEDDForDiffusionLM)}[
        kind
    ]
    config = config_class(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        cond_dim=args.cond_dim,
        max_position_embeddings=args.length,
        dropout=0.0,
    )
    torch.manual_seed(0)
    model = model_class(config).eval()
    with torch.no_grad():  # the official init zeroes these; random values keep every kernel honest
        for name, p in model.named_parameters():
            if "adaLN_modulation" in name or "output_layer.linear" in name:
                p.normal_(0.0, 0.02)
    return model


@torch.no_grad()
def bench(sampler_name, args):
    model = build(SAMPLER_MODEL[sampler_name], args)
    sampler = get_sampler(sampler_name, model.graph, model.schedule)
    timesteps = sampler.set_timesteps(args.steps, 1e-5)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, args.vocab - 1, (args.batch, args.length), generator=g)
    t = torch.full((args.batch,), float(args.t))
    s = t - (timesteps[0] - timesteps[1])  # one step of the grid
    level = model.schedule(t)
    x_t = model.graph.sample_xt(x0, level.sigma, generator=g)
    sigma = model.backbone_conditioning(level)

    def ours():
        output = model(input_ids=x_t, timesteps=t).logits
        return sampler.step(output, x_t, t, s, g).prev_sample

    def baseline():
        return model.backbone(x_t, sigma)

    clock = CLOCKS[args.clock]

    def timed(fn):
        start = clock()
        fn()
        return clock() - start

    for fn in (ours, baseline):  # warm-up
        timed(fn)
    times = {"ours": [], "baseline": []}
    for _ in range(args.repeats):  # interleaved, so that load changes hit both alike
        times["ours"].append(timed(ours))
        times["baseline"].append(timed(baseline))
    ours_s, base_s = statistics.median(times["ours"]), statistics.median(times["baseline"])
    print(
        f"{sampler_name} step (B={args.batch}, L={args.length}, V={args.vocab}, {args.layers}x{args.hidden}, t={args.t}): "
        f"{args.clock} time: ours {ours_s * 1e3:.1f} ms, backbone {base_s * 1e3:.1f} ms, ratio {ours_s / base_s:.3f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sampler", choices=[*SAMPLER_MODEL, "all"], default="all")
    parser.add_argument("--vocab", type=int, default=50258)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--cond-dim", type=int, default=128)
    parser.add_argument("--t", type=float, default=0.5, help="the step's time (the fraction of masked positions)")
    parser.add_argument("--steps", type=int, default=128, help="the grid that sets the step size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads; 0 keeps torch's choice (on a small shared CPU, several threads mostly spin)",
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="cpu: this process's CPU time (steady on a shared machine with --threads 1); wall: elapsed time",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in list(SAMPLER_MODEL) if args.sampler == "all" else [args.sampler]:
        bench(name, args)


if __name__ == "__main__":
    main()
