"""Fine-tune a diffusion LM with LoRA on a local text file, then sample from the adapted model.

    # adapt a trained hf_ddlm model (a folder with config.json, model.safetensors and a tokenizer)
    python examples/finetune_lora.py --text my_corpus.txt --base path/to/model --output-dir out/lora

    # no model at hand: pretrain a small MDLM on the first 80% of the file, then adapt it to the rest
    python examples/finetune_lora.py --text my_corpus.txt --output-dir out/lora

Only the adapter weights train (``hf_ddlm.peft_utils``: attention and MLP projections of every
block, ``task_type`` unset). The script reports the ELBO perplexity bound on held-out text before
and after, saves the adapter (``adapter/``) and the merged model (``merged/``, loadable with
``AutoModel.from_pretrained`` without peft), and prints a sample drawn through the adapted model.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, Trainer, TrainingArguments

import hf_ddlm  # noqa: F401  (registers the Auto classes)
from hf_ddlm import MDLMConfig, MDLMForDiffusionLM
from hf_ddlm.data import chunk_dataset, train_bpe_tokenizer
from hf_ddlm.likelihood import perplexity_bound
from hf_ddlm.peft_utils import count_parameters, get_lora_model


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", required=True, help="a UTF-8 text file to fine-tune on")
    p.add_argument(
        "--base",
        default=None,
        help="an hf_ddlm model folder (with its tokenizer); omitted: pretrain a small MDLM first",
    )
    p.add_argument("--output-dir", default="outputs/finetune_lora")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=200, help="LoRA optimizer steps")
    p.add_argument("--pretrain-steps", type=int, default=300, help="steps of the small base model (without --base)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--r", type=int, default=8, help="LoRA rank")
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (the update is scaled by alpha / r)")
    p.add_argument("--eval-samples", type=int, default=4, help="Monte-Carlo draws of t per held-out sequence")
    p.add_argument("--sample-steps", type=int, default=64, help="denoising steps of the final sample")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def train(model, dataset, output_dir, steps, batch_size, lr, seed):
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        lr_scheduler_type="cosine",
        warmup_steps=min(20, steps // 10),
        weight_decay=0.0,
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        seed=seed,
        label_names=["labels"],  # a PeftModel's forward takes **kwargs, so name the label column
    )
    Trainer(model=model, args=args, train_dataset=dataset).train()


def small_base(tokenizer, seq_len):
    config = MDLMConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        cond_dim=64,
        max_position_embeddings=seq_len,
        dropout=0.0,
    )
    return MDLMForDiffusionLM(config)


def main(argv=None):
    args = parse_args(argv)
    text_path = Path(args.text)
    if not text_path.is_file():
        raise SystemExit(f"--text: {text_path} is not a file")
    text = text_path.read_text(encoding="utf-8")
    out = Path(args.output_dir)
    torch.manual_seed(args.seed)

    if args.base is None:
        split = int(len(text) * 0.8)
        pretrain_text, text = text[:split], text[split:]
        tokenizer = train_bpe_tokenizer(pretrain_text + text, vocab_size=512)
        model = small_base(tokenizer, args.seq_len)
        print(
            f"pretraining a {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M-parameter MDLM for {args.pretrain_steps} steps"
        )
        train(
            model,
            chunk_dataset(pretrain_text, tokenizer, args.seq_len),
            out / "pretrain",
            args.pretrain_steps,
            args.batch_size,
            args.lr,
            args.seed,
        )
    else:
        model = AutoModel.from_pretrained(args.base)
        tokenizer = AutoTokenizer.from_pretrained(args.base)
        args.seq_len = min(args.seq_len, model.config.max_position_embeddings)

    rows = chunk_dataset(text, tokenizer, args.seq_len)
    held_out = max(1, len(rows) // 10)
    eval_ids = torch.stack([rows[i]["input_ids"] for i in range(held_out)])
    train_rows = rows.select(range(held_out, len(rows))) if len(rows) > held_out else rows

    def bound():
        g = torch.Generator().manual_seed(args.seed)
        return perplexity_bound(
            model, eval_ids, batch_size=args.batch_size, num_samples=args.eval_samples, generator=g
        ).perplexity

    before = bound()
    model = get_lora_model(model, r=args.r, lora_alpha=args.alpha)
    trainable, total = count_parameters(model)
    print(f"LoRA r={args.r}: training {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%)")
    train(model, train_rows, out / "lora", args.steps, args.batch_size, args.lr, args.seed)
    after = bound()
    print(f"held-out ELBO perplexity bound: {before:.2f} before, {after:.2f} after LoRA")

    model.save_pretrained(out / "adapter")
    model.eval()
    sample = model.generate(max_length=args.seq_len, num_inference_steps=args.sample_steps, seed=args.seed)
    print("sample through the adapted model:\n" + tokenizer.decode(sample[0], skip_special_tokens=True))

    merged = model.merge_and_unload()
    merged.save_pretrained(out / "merged")
    tokenizer.save_pretrained(out / "merged")
    print(f"saved the adapter to {out / 'adapter'} and the merged model to {out / 'merged'}")
    return {"perplexity_before": before, "perplexity_after": after, "trainable": trainable, "total": total}


if __name__ == "__main__":
    result = main()
    if not all(math.isfinite(v) for v in (result["perplexity_before"], result["perplexity_after"])):
        raise SystemExit("the perplexity bound is not finite")
