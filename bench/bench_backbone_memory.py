"""Peak memory of one MDLM training step on a transformers backbone vs the DiT, at a Qwen-size vocabulary.

At V = 151,936 and L = 512 one [B, L, V] float32 tensor is B x 311 MB, so the peak of a training step
with a shallow backbone is set by how many such tensors are alive at once. The transformers path
must not hold more of them than the DiT path: its base model runs without its own LM head (no
second logits tensor, no float32 upcast copy), and the diffusion head is applied once.

Each configuration runs in a fresh process (CPU: the growth of the peak RSS during the step, after
a short warm-up step; CUDA: ``max_memory_allocated``). Printed: each peak, the peak in units of
one [B, L, V] float32 tensor, and the ratio TransformersBackbone / DiT.

    OMP_NUM_THREADS=1 python bench/bench_backbone_memory.py [--vocab 151936] [--length 512] [--batch 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
from memory import randomize_zero_init, training_step_peak
from transformers import Qwen2Config

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM

BACKBONES = ("dit", "qwen2")


def build(backbone, args):
    """A 1-layer MDLM: the DiT, or a Qwen2 decoder of the same width (untied head, as the DiT's)."""
    if backbone == "dit":
        config = MDLMConfig(
            vocab_size=args.vocab,
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            cond_dim=64,
            max_position_embeddings=args.length,
            dropout=0.0,
        )
    else:
        qwen2 = Qwen2Config(
            vocab_size=args.vocab,
            hidden_size=args.hidden,
            intermediate_size=4 * args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            num_key_value_heads=args.heads,
            max_position_embeddings=args.length,
            tie_word_embeddings=False,
        )
        config = MDLMConfig(backbone_config=qwen2, max_position_embeddings=args.length)
    torch.manual_seed(0)
    model = MDLMForDiffusionLM(config).to(args.device).train()
    return randomize_zero_init(model)


def child(args):
    """One training step of one backbone, in this (fresh) process; prints JSON."""
    torch.set_num_threads(args.threads)
    model = build(args.child, args)
    print(json.dumps({"peak": training_step_peak(model, args.vocab, args.batch, args.length, args.device)}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", choices=BACKBONES, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    blv = args.batch * args.length * args.vocab * 4
    print(f"V = {args.vocab:,}, L = {args.length}, B = {args.batch}: one [B, L, V] float32 = {blv / 2**20:.0f} MiB")
    peaks = {}
    for backbone in BACKBONES:
        cmd = [sys.executable, __file__, "--child", backbone]
        for name in ("vocab", "length", "batch", "layers", "hidden", "heads", "device", "threads"):
            cmd += [f"--{name}", str(getattr(args, name))]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        peaks[backbone] = json.loads(out)["peak"]
        print(
            f"train step peak  {backbone:5s}  {peaks[backbone] / 2**20:8.0f} MiB  "
            f"= {peaks[backbone] / blv:.2f} x [B, L, V]",
            flush=True,
        )
    print(f"peak memory TransformersBackbone (qwen2) / DiT: {peaks['qwen2'] / peaks['dit']:.3f}")


if __name__ == "__main__":
    main()
