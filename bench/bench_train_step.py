"""One training step of an hf_ddlm model over the bare backbone with a plain cross-entropy.

Ours: ``model(input_ids=x_t, timesteps=t, labels=x0).loss.backward()`` (input checks, schedule,
parameterization, the method's objective, the loss reduction). Baseline, on the same batch and the
same weights: ``model.backbone(x_t, sigma)`` + ``F.cross_entropy(logits, x0)`` + backward. The
ratio ours / baseline is the overhead of everything around the network; target <= 1.03.

The default is a 1-layer, 128-wide backbone at the GPT-2 vocabulary and L = 1024, where the
[B, L, V] tensors dominate (the worst case for that overhead). ``--layers 12 --hidden 768 --heads 12
--batch 8`` is the published size.

    python bench/bench_train_step.py [--model mdlm|sedd|both] [--repeats 3] ...
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM, SEDDConfig, SEDDForDiffusionLM


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
    model = model_class(config).train()
    with torch.no_grad():  # the official init zeroes these; random values keep every kernel honest
        for name, p in model.named_parameters():
            if "adaLN_modulation" in name or "output_layer.linear" in name:
                p.normal_(0.0, 0.02)
    return model


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn, model, clock):
    model.zero_grad(set_to_none=True)
    start = clock()
    fn()
    return clock() - start


def bench(kind, args):
    model = build(kind, args)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, args.vocab - 1, (args.batch, args.length), generator=g)
    t = torch.rand(args.batch, generator=g) * 0.98 + 0.01
    level = model.schedule(t)
    x_t = model.graph.sample_xt(x0, level.sigma, generator=g)
    sigma = model.backbone_conditioning(level)

    def ours():
        model(input_ids=x_t, timesteps=t, labels=x0).loss.backward()

    def baseline():
        logits = model.backbone(x_t, sigma)
        F.cross_entropy(logits.view(-1, logits.shape[-1]), x0.view(-1)).backward()

    clock = CLOCKS[args.clock]
    for fn in (ours, baseline):  # warm-up (allocator, thread pool)
        timed(fn, model, clock)
    times = {"ours": [], "baseline": []}
    for _ in range(args.repeats):  # interleaved, so that load changes hit both alike
        times["ours"].append(timed(ours, model, clock))
        times["baseline"].append(timed(baseline, model, clock))
    ours_s, base_s = statistics.median(times["ours"]), statistics.median(times["baseline"])
    print(
        f"{kind} train step (B={args.batch}, L={args.length}, V={args.vocab}, {args.layers}x{args.hidden}): "
        f"{args.clock} time: ours {ours_s * 1e3:.1f} ms, backbone + cross-entropy {base_s * 1e3:.1f} ms, ratio {ours_s / base_s:.3f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["mdlm", "sedd", "both"], default="both")
    parser.add_argument("--vocab", type=int, default=50258)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--cond-dim", type=int, default=128)
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
    for kind in ["mdlm", "sedd"] if args.model == "both" else [args.model]:
        bench(kind, args)


if __name__ == "__main__":
    main()
