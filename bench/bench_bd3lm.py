"""BD3-LM speed: ratios from one run (no timed tests; targets in brackets).

1. Cached vs uncached block decoding (first-hitting, one token per NFE) of 256 / 512 / 1024 tokens at
   block sizes 4 and 16: uncached time / cached time [>= 5x at 1024, growing with length].
2. Time per generated token of cached BD3-LM vs an autoregressive transformer of the same backbone
   with a KV cache (one forward of one token per token) [<= 1.5x].
3. The vectorised 2L training step (forward + backward) vs L / block_size separate forwards on
   [clean prefix ; noisy block]: printed.
4. NFEs per generated token for each sampler (with and without the commit forwards).

The backbone is a small DiT (default 128 wide, 2 layers, vocab 4096, L = 1024) so that the run fits
a CPU; ``--clock cpu`` (default) times process CPU time, which a busy shared machine disturbs less.

    python bench/bench_bd3lm.py [--threads 1] [--clock cpu|wall] [--hidden 128 --layers 2 ...] [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch

from hf_ddlm import BD3LMConfig, BD3LMForDiffusionLM
from hf_ddlm.generation.cache import BlockKVCache
from hf_ddlm.samplers import sample_categorical

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def build(args, block_size):
    config = BD3LMConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        cond_dim=64,
        max_position_embeddings=args.length,
        dropout=0.0,
        block_size=block_size,
        ignore_bos=False,
    )
    torch.manual_seed(0)
    model = BD3LMForDiffusionLM(config).eval()
    with torch.no_grad():  # the official init zeroes these; random values keep every kernel honest
        for name, p in model.named_parameters():
            if "adaLN_modulation" in name or "output_layer.linear" in name:
                p.normal_(0.0, 0.02)
    return model


def timed(clock, fn, repeats=None):
    """The fastest of ``repeats`` runs (a shared machine only ever slows a run down)."""
    best, out = float("inf"), None
    for _ in range(repeats or REPEATS):
        start = clock()
        out = fn()
        best = min(best, clock() - start)
    return best, out


REPEATS = 3


def generation(args, clock):
    print("\n1. cached vs uncached block decoding (first-hitting)")
    print(f"{'block':>6} {'tokens':>7} {'cached s':>9} {'uncached s':>11} {'ratio':>7}")
    lengths = [256, 512] if args.quick else [256, 512, 1024]
    for block in (4, 16):
        model = build(args, block)
        for n in lengths:
            kw = dict(max_length=n, num_return_sequences=args.batch, seed=0)
            cached, a = timed(clock, lambda: model.generate(use_cache=True, **kw))
            uncached, b = timed(clock, lambda: model.generate(use_cache=False, **kw), repeats=1)  # long: one run
            same = "" if torch.equal(a, b) else "  (sequences differ!)"
            print(f"{block:>6} {n:>7} {cached:>9.2f} {uncached:>11.2f} {uncached / cached:>6.1f}x{same}")


@torch.no_grad()
def autoregressive(model, n, batch, generator):
    """AR decoding with the same backbone: one forward of the last token per token; it commits the
    token's keys/values and gives the logits of the next one (a KV cache of block size 1)."""
    cache = BlockKVCache(
        model.config.num_hidden_layers, model.config.max_position_embeddings, 1, model.backbone.rotary_emb
    )
    token = torch.zeros(batch, 1, dtype=torch.long)
    sigma = torch.zeros(batch)
    out = [token]
    for _ in range(n - 1):
        view = cache.commit()
        logits = model.backbone(token, sigma, None, view.position_ids(1, "cpu"), kv_caches=view.layers)
        view.close(1)
        probs = logits[:, -1].double().log_softmax(-1).exp()
        token = sample_categorical(probs, generator)[:, None]
        out.append(token)
    return torch.cat(out, 1)


def versus_autoregressive(args, clock):
    print("\n2. time per generated token: cached BD3-LM vs an AR transformer with a KV cache")
    n = 512 if args.quick else args.length
    models = {"AR": build(args, 4), "BD3 L=4": build(args, 4), "BD3 L=16": build(args, 16)}
    runs = {
        "AR": lambda: autoregressive(models["AR"], n, args.batch, torch.Generator().manual_seed(0)),
        "BD3 L=4": lambda: models["BD3 L=4"].generate(max_length=n, num_return_sequences=args.batch, seed=0),
        "BD3 L=16": lambda: models["BD3 L=16"].generate(max_length=n, num_return_sequences=args.batch, seed=0),
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(REPEATS):  # interleaved, so that every model sees the same load
        for name, run in runs.items():
            best[name] = min(best[name], timed(clock, run, repeats=1)[0])
    print(f"{'model':>12} {'ms/token':>9} {'vs AR':>7}")
    for name, seconds in best.items():
        print(f"{name:>12} {1e3 * seconds / n:>9.3f} {seconds / best['AR']:>6.2f}x")


def training_step(args, clock):
    print("\n3. vectorised 2L training step vs separate forwards (forward + backward)")
    print(f"{'block':>6} {'2L step s':>10} {'separate s':>11} {'ratio':>7}")
    length = 256 if args.quick else args.length // 2
    for block in (4, 16):
        model = build(args, block).train()
        g = torch.Generator().manual_seed(0)
        x0 = torch.randint(0, args.vocab - 1, (args.batch, length), generator=g)
        x_t = x0.masked_fill(torch.rand(x0.shape, generator=g) < 0.5, args.vocab - 1)

        def vectorised():
            model(input_ids=x_t, labels=x0, timesteps=0.5).loss.backward()

        def separate():
            total = 0.0
            for b in range(length // block):
                lo, hi = b * block, (b + 1) * block
                out = model(input_ids=torch.cat([x0[:, :lo], x_t[:, lo:hi]], 1)).logits[:, lo:hi]
                nll = -out.gather(-1, x0[:, lo:hi, None]).squeeze(-1) * (x_t[:, lo:hi] == args.vocab - 1)
                total = total + nll.sum()
            total.backward()

        vec, _ = timed(clock, vectorised)
        sep, _ = timed(clock, separate)
        print(f"{block:>6} {vec:>10.2f} {sep:>11.2f} {sep / vec:>6.1f}x")


def nfe_per_token(args):
    print("\n4. NFEs per generated token: denoising calls; + our commit-only forwards (a block's commit rides")
    print("   on the next block's first call); + one commit forward per block (the official count)")
    n = 256
    print(f"{'sampler':>28} {'block':>6} {'NFE/token':>10} {'+ours':>7} {'+official':>10}")
    for block in (4, 16):
        model = build(args, block)
        for sampler, kw in (
            ("first_hitting", {}),
            ("block_ancestral", {"num_inference_steps": 16}),
            ("block_ancestral", {"num_inference_steps": 128}),
            ("ancestral", {"num_inference_steps": 128}),
        ):
            out = model.generate(
                max_length=n,
                num_return_sequences=args.batch,
                seed=0,
                sampler=sampler,
                return_dict_in_generate=True,
                **kw,
            )
            name = sampler + (f" T={kw['num_inference_steps']}" if kw else "")
            nfe, commits = out.num_function_evaluations, out.num_commit_evaluations
            official = nfe + n // block - 1  # every block but the last committed by its own forward
            print(f"{name:>28} {block:>6} {nfe / n:>10.3f} {(nfe + commits) / n:>7.3f} {official / n:>10.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--quick", action="store_true", help="shorter lengths")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (the fastest counts)")
    parser.add_argument("--only", choices=["generation", "ar", "train", "nfe"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global REPEATS
    REPEATS = args.repeats
    clock = CLOCKS[args.clock]
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.clock} clock, DiT {args.hidden}x{args.layers}, V={args.vocab}, L={args.length}, batch {args.batch}"
    )
    runs = {
        "generation": lambda: generation(args, clock),
        "ar": lambda: versus_autoregressive(args, clock),
        "train": lambda: training_step(args, clock),
        "nfe": lambda: nfe_per_token(args),
    }
    for name, run in runs.items():
        if args.only in (None, name):
            run()


if __name__ == "__main__":
    main()
