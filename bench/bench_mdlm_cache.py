"""MDLM sampling with and without reuse of the network output across unchanged steps.

MDLM is not time-conditioned, so when a step changes no token the next step's network output is
the same: ``generate`` reuses it (the official ``ddpm_cache``). With many more steps than tokens
most steps change nothing. This runs the same seeded generation with ``use_cache=True`` and
``use_cache=False`` and prints

* the numbers of function evaluations (NFE), checking that the cached NFE equals 1 + the number of
  steps that changed the canvas and that both runs produced the same sequences;
* the time ratio cached / uncached.

Default: L = 64, 1000 steps, a 1-layer 128-wide backbone, a 4096-token vocabulary (the uncached
run makes 1001 network calls; ``--vocab 50258`` is the GPT-2 size).

    python bench/bench_mdlm_cache.py [--length 64] [--steps 1000] [--sampler-kwargs linear] ...
"""

from __future__ import annotations

import argparse
import time

import torch

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=4096, help="50258 is GPT-2's (+ mask); slower on a small CPU")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--cond-dim", type=int, default=128)
    parser.add_argument(
        "--move-chance",
        choices=["schedule", "linear"],
        default="linear",
        help="linear: the official ddpm_cache update; schedule: MDLM's ddpm",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads; 0 keeps torch's choice (on a small shared CPU, several threads mostly spin)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = MDLMConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        cond_dim=args.cond_dim,
        max_position_embeddings=args.length,
        dropout=0.0,
    )
    torch.manual_seed(0)
    model = MDLMForDiffusionLM(config).eval()
    with torch.no_grad():  # the official init zeroes these; random values keep every kernel honest
        for name, p in model.named_parameters():
            if "adaLN_modulation" in name or "output_layer.linear" in name:
                p.normal_(0.0, 0.02)
    assert not model.config.time_conditioning

    kwargs = dict(
        max_length=args.length,
        num_return_sequences=args.batch,
        num_inference_steps=args.steps,
        sampler="ancestral",
        sampler_kwargs={"move_chance": args.move_chance},
        return_dict_in_generate=True,
        output_trajectory=True,
    )
    runs = {}
    for use_cache in (True, False):
        start = time.perf_counter()
        out = model.generate(seed=args.seed, use_cache=use_cache, **kwargs)
        runs[use_cache] = (out, time.perf_counter() - start)
    (cached, cached_s), (uncached, uncached_s) = runs[True], runs[False]

    states = [torch.full_like(cached.sequences, model.config.mask_token_id), *cached.trajectory[: args.steps]]
    changed = sum(not torch.equal(states[k], states[k + 1]) for k in range(args.steps))
    same = torch.equal(cached.sequences, uncached.sequences)
    print(
        f"MDLM ancestral ({args.move_chance}), B={args.batch}, L={args.length}, {args.steps} steps, "
        f"{args.layers}x{args.hidden}, V={args.vocab}"
    )
    print(
        f"NFE cached {cached.num_function_evaluations} (steps that changed a token: {changed}, + 1 = {changed + 1}: "
        f"{'ok' if cached.num_function_evaluations == changed + 1 else 'MISMATCH'}), "
        f"uncached {uncached.num_function_evaluations}; same sequences: {same}"
    )
    print(f"time cached {cached_s:.2f} s, uncached {uncached_s:.2f} s, ratio {cached_s / uncached_s:.3f}")
    if cached.num_function_evaluations != changed + 1 or not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
