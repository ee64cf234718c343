"""``hf-ddlm train``: train a model with the stock transformers ``Trainer``, from a config folder
(modeling_configs/<name>) or a trained model, on text files or a datasets dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..export.atomic import write_file
from .arguments import add_shared, existing_dir, existing_file, existing_path, key_value, positive_int
from .common import CLIError, chunk_rows, device_name, load_model, load_tokenizer, read_texts, read_token_rows


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model with the transformers Trainer",
        description="Train a model from a config of modeling_configs/ (or any config folder) on text files or a "
        "datasets dataset on disk, with the stock transformers Trainer.",
    )
    p.add_argument("--config", type=existing_path, help="a config folder (modeling_configs/<name>) or config.json")
    p.add_argument("--init-from", type=existing_dir, help="continue from a trained model folder instead of --config")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--train-file", type=existing_file, nargs="+", help="UTF-8 text files (one document each)")
    data.add_argument(
        "--dataset", help="a datasets dataset: a folder written by save_to_disk, or a name load_dataset finds offline"
    )
    p.add_argument("--dataset-config", default=None, help="the dataset's configuration name")
    p.add_argument("--split", default="train")
    p.add_argument("--text-column", default="text")
    p.add_argument("--tokenizer", default="bpe", help="'bpe' (train one on the text), 'gpt2', or a tokenizer folder")
    p.add_argument("--bpe-vocab-size", type=positive_int, default=1024)
    p.add_argument(
        "--set", type=key_value, nargs="*", metavar="KEY=VALUE", help="override config fields, e.g. hidden_size=256"
    )
    p.add_argument("--seq-len", type=positive_int, help="training length (sets max_position_embeddings)")
    p.add_argument("--output-dir", type=Path, required=True)
    p.add_argument("--max-steps", type=positive_int, default=1000)
    add_shared(p, "--batch-size", default=16)
    p.add_argument("--grad-accum", type=positive_int, default=1)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: only at the end)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    p.add_argument(
        "--lora-r", type=positive_int, help="train LoRA adapters of this rank (with --init-from), merged at the end"
    )
    add_shared(p, "--eval-file", help="held-out text: report the ELBO perplexity bound")
    add_shared(p, "--eval-samples", "--seed", "--device")
    p.set_defaults(func=run)


def _build_tokenizer(args, texts):
    from ..data import gpt2_tokenizer, train_bpe_tokenizer

    if args.tokenizer == "bpe":
        return train_bpe_tokenizer(texts, vocab_size=args.bpe_vocab_size)
    if args.tokenizer == "gpt2":
        return gpt2_tokenizer()
    path = Path(args.tokenizer)
    if not path.exists():
        raise CLIError(f"--tokenizer: '{args.tokenizer}' is neither 'bpe', 'gpt2' nor an existing tokenizer folder")
    return load_tokenizer(path)


def _dataset_texts(args):
    import datasets

    path = Path(args.dataset)
    if path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
        ds = datasets.load_from_disk(str(path))
    else:
        try:
            ds = datasets.load_dataset(args.dataset, args.dataset_config, split=args.split)
        except (OSError, ValueError, ImportError) as error:  # not found, offline (ConnectionError), bad config
            raise CLIError(
                f"--dataset: cannot load '{args.dataset}' ({type(error).__name__}: {str(error).splitlines()[0]})"
            ) from None
    if isinstance(ds, datasets.DatasetDict):
        if args.split not in ds:
            raise CLIError(f"--split: the dataset has splits {sorted(ds)}, not '{args.split}'")
        ds = ds[args.split]
    if args.text_column not in ds.column_names:
        raise CLIError(f"--text-column: the dataset has columns {ds.column_names}, not '{args.text_column}'")
    return [t for t in ds[args.text_column] if t and t.strip()]


def _config(args, vocab_size):
    from transformers import AutoConfig

    import hf_ddlm  # noqa: F401

    overrides = dict(args.set or [])
    if args.seq_len:
        overrides["max_position_embeddings"] = args.seq_len
    base = AutoConfig.from_pretrained(args.config)
    unknown = sorted(k for k in overrides if not hasattr(base, k))
    if unknown:
        raise CLIError(f"--set: {type(base).__name__} has no field(s) {unknown}")
    try:
        config = AutoConfig.from_pretrained(args.config, **overrides)
    except ValueError as error:  # the config's own check of a value, naming the field
        raise CLIError(f"--set: {error}") from None
    config.vocab_size = vocab_size
    if getattr(config, "graph", None) == "absorbing":
        config.mask_token_id = vocab_size - 1
    # re-run the config's validation with the final vocabulary
    return type(config).from_dict(config.to_dict())


def _new_model(args, texts):
    """A freshly initialised model of ``--config`` and its tokenizer (built or loaded)."""
    import torch
    from transformers import AutoModel

    from ..generation import DiffusionGenerationConfig

    tokenizer = _build_tokenizer(args, texts)
    vocab = len(tokenizer)
    config = _config(args, vocab)
    if getattr(config, "graph", None) == "absorbing" and tokenizer.mask_token_id != vocab - 1:
        raise CLIError(
            f"the absorbing graph needs the tokenizer's mask token on its last id ({vocab - 1}); "
            f"this tokenizer has mask_token_id={tokenizer.mask_token_id}"
        )
    torch.manual_seed(args.seed)
    model = AutoModel.from_config(config)
    generation_file = Path(args.config) / "generation_config.json" if Path(args.config).is_dir() else None
    if generation_file is not None and generation_file.is_file():
        model.generation_config = DiffusionGenerationConfig.from_pretrained(args.config)
    return model, tokenizer


def run(args) -> int:
    import torch
    from transformers import Trainer, TrainingArguments

    from ..data import DiffusionDataCollator
    from ..likelihood import perplexity_bound

    if not args.config and not args.init_from:
        raise CLIError("give --config (a model configuration) or --init-from (a trained model)")
    texts = read_texts(args.train_file) if args.train_file else _dataset_texts(args)
    if args.init_from:
        model = load_model(args.init_from, device="cpu")
        tokenizer = load_tokenizer(args.tokenizer if args.tokenizer not in ("bpe", "gpt2") else None, args.init_from)
    else:
        model, tokenizer = _new_model(args, texts)
    seq_len = model.config.max_position_embeddings
    train_rows = chunk_rows(texts, tokenizer, seq_len)
    if args.lora_r:
        from ..peft_utils import get_lora_model

        model = get_lora_model(model, r=args.lora_r, lora_alpha=2 * args.lora_r)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{type(model).__name__}: {n_params / 1e6:.2f}M parameters, {len(train_rows)} training rows of {seq_len} tokens",
        file=sys.stderr,
    )
    training_args = TrainingArguments(
        output_dir=str(args.output_dir),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        warmup_steps=args.warmup_steps,
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        logging_steps=max(1, args.max_steps // 20),
        save_strategy="steps" if args.save_steps else "no",
        save_steps=args.save_steps or 500,
        bf16=args.bf16,
        seed=args.seed,
        report_to="none",
        use_cpu=device_name(args.device) == "cpu",
        label_names=["labels"],
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_rows,
        data_collator=DiffusionDataCollator.from_tokenizer(tokenizer),
    )
    trainer.train()
    if args.lora_r:
        model = model.merge_and_unload()
    model.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    result = {
        "output_dir": str(args.output_dir),
        "steps": trainer.state.global_step,
        "train_loss": trainer.state.log_history[-1].get("train_loss"),
    }
    if args.eval_file:
        ids = read_token_rows(args.eval_file, tokenizer, seq_len)
        g = torch.Generator(device=model.device).manual_seed(args.seed)
        bound = perplexity_bound(
            model.eval(), ids, batch_size=args.batch_size, num_samples=args.eval_samples, generator=g
        )
        result["eval_perplexity_bound"] = bound.perplexity
        write_file(Path(args.output_dir) / "eval_results.json", json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


__all__ = ["add_parser", "run"]
