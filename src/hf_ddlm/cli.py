"""``hf-ddlm``: train, sample, evaluate, convert and export discrete diffusion LMs from a shell.

    hf-ddlm train    --config modeling_configs/mdlm-owt --train-file corpus.txt --output-dir out/mdlm
    hf-ddlm generate out/mdlm --prompt "To be, or not" --steps 128 --save-trajectory denoising.png
    hf-ddlm generate out/mdlm --infill "The [[4]] sat on the [[2]]." --sampler ancestral
    hf-ddlm eval     out/mdlm held_out.txt --num-samples 8
    hf-ddlm convert  path/to/louaaron-sedd-small out/sedd-small
    hf-ddlm export   out/mdlm out/mdlm-hub [--push-to-hub user/mdlm-small]
    hf-ddlm lm-eval  --model hf_ddlm --model_args pretrained=out/mdlm --tasks my_task --include_path tasks/

Every subcommand has ``--help``. Errors in the arguments (a path that does not exist, a malformed
infilling pattern) exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

PROG = "hf-ddlm"


class CLIError(ValueError):
    """A user error: printed as one line, exit status 2."""


# --- argument types ---------------------------------------------------------------------------
def existing_path(value: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"path '{value}' does not exist")
    return path


def existing_file(value: str) -> Path:
    path = existing_path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"'{value}' is not a file")
    return path


def existing_dir(value: str) -> Path:
    path = existing_path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{value}' is not a folder")
    return path


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not an integer") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {number}")
    return number


def key_value(value: str) -> tuple[str, object]:
    if "=" not in value:
        raise argparse.ArgumentTypeError(f"'{value}' must look like key=value")
    key, raw = value.split("=", 1)
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        parsed = raw
    return key.strip(), parsed


# --- infilling patterns ------------------------------------------------------------------------
HOLE = re.compile(r"\[\[|\]\]")


def parse_infill_pattern(pattern: str, tokenizer):
    """Parse an infilling pattern: text with holes ``[[N]]`` (N tokens to generate).

    ``"The [[3]] sat on the [[2]]."`` gives the token ids of the text pieces (each tokenized on
    its own, without special tokens) with N placeholder positions per hole, and a boolean mask
    that is True on the holes. Returns ``(input_ids [L], infill_mask [L])``. Raises ValueError for
    a hole that is not closed, a ``]]`` without ``[[``, a hole size that is not a positive
    integer, or a pattern without holes.
    """
    import torch

    pieces: list[tuple[str, object]] = []  # ("text", str) or ("hole", n)
    pos, open_at = 0, None
    for match in HOLE.finditer(pattern):
        token = match.group()
        if token == "[[":
            if open_at is not None:
                raise ValueError(
                    f"infill pattern: '[[' at character {match.start()} opens a hole inside the hole at {open_at}"
                )
            pieces.append(("text", pattern[pos : match.start()]))
            open_at, pos = match.start(), match.end()
        else:
            if open_at is None:
                raise ValueError(f"infill pattern: ']]' at character {match.start()} has no matching '[['")
            content = pattern[pos : match.start()].strip()
            if not content.isdigit() or int(content) < 1:
                raise ValueError(
                    f"infill pattern: hole '[[{pattern[pos : match.start()]}]]' at character {open_at} must hold a positive "
                    "number of tokens, e.g. [[5]]"
                )
            pieces.append(("hole", int(content)))
            open_at, pos = None, match.end()
    if open_at is not None:
        raise ValueError(f"infill pattern: '[[' at character {open_at} is not closed by ']]'")
    pieces.append(("text", pattern[pos:]))
    if not any(kind == "hole" for kind, _ in pieces):
        raise ValueError(
            "infill pattern has no hole: mark each span to generate as [[N]] (N tokens), e.g. 'The [[3]] sat.'"
        )
    mask_id = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else 0
    ids, holes = [], []
    for kind, value in pieces:
        if kind == "text":
            if value:
                encoded = tokenizer(value, add_special_tokens=False)["input_ids"]
                ids += encoded
                holes += [False] * len(encoded)
        else:
            ids += [mask_id] * value
            holes += [True] * value
    return torch.tensor(ids, dtype=torch.long), torch.tensor(holes, dtype=torch.bool)


# --- shared helpers ----------------------------------------------------------------------------
def _device(name: str | None) -> str:
    import torch

    if name:
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(path, device=None, dtype=None):
    import torch
    from transformers import AutoModel

    import hf_ddlm  # noqa: F401  (registers the models)

    if not (Path(path) / "config.json").is_file():
        raise CLIError(f"{path} holds no config.json: pass a folder written by save_pretrained or 'hf-ddlm train'")
    kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
    model = AutoModel.from_pretrained(path, **kwargs)
    return model.to(_device(device)).eval()


def load_tokenizer(path, model_path=None):
    from transformers import AutoTokenizer

    source = path or model_path
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise CLIError(
            f"no tokenizer could be loaded from {source} ({str(error).splitlines()[0]}); pass --tokenizer PATH"
        ) from None


def read_texts(files) -> list[str]:
    texts = []
    for f in files:
        text = Path(f).read_text(encoding="utf-8")
        if text.strip():
            texts.append(text)
    if not texts:
        raise CLIError("the text files are empty")
    return texts


def _rows(texts, tokenizer, seq_len):
    from .data import chunk_dataset

    return chunk_dataset(texts, tokenizer, seq_len)


def score_rows(model, ids, batch_size, num_samples, seed, progress=True):
    """Total NELBO (nats), tokens and sequences of ``ids`` [N, L], with a progress bar."""
    import torch
    from tqdm.auto import tqdm

    generator = torch.Generator(device=model.device).manual_seed(seed)
    total = 0.0
    batches = range(0, ids.shape[0], batch_size)
    for start in tqdm(batches, desc="NELBO", unit="batch", disable=not progress, file=sys.stderr):
        chunk = ids[start : start + batch_size].to(model.device)
        with torch.no_grad():
            total += float(model.negative_elbo(chunk, num_samples=num_samples, generator=generator).double().sum())
    tokens = int(ids.numel())
    return {
        "perplexity_bound": math.exp(total / tokens),
        "nats_per_token": total / tokens,
        "bits_per_token": total / tokens / math.log(2),
        "nelbo": total,
        "num_tokens": tokens,
        "num_sequences": int(ids.shape[0]),
        "num_samples": num_samples,
        "seq_len": int(ids.shape[1]),
    }


# --- train -------------------------------------------------------------------------------------
def _build_tokenizer(args, texts):
    from .data import gpt2_tokenizer, train_bpe_tokenizer

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
    config = AutoConfig.from_pretrained(args.config, **overrides)
    config.vocab_size = vocab_size
    if getattr(config, "graph", None) == "absorbing":
        config.mask_token_id = vocab_size - 1
    # re-run the config's validation with the final vocabulary
    return type(config).from_dict(config.to_dict())


def cmd_train(args):
    import torch
    from transformers import AutoModel, Trainer, TrainingArguments

    from .generation import DiffusionGenerationConfig
    from .likelihood import perplexity_bound
    from .training import DiffusionDataCollator

    texts = read_texts(args.train_file) if args.train_file else _dataset_texts(args)
    if args.init_from:
        model = load_model(args.init_from, device="cpu")
        tokenizer = load_tokenizer(args.tokenizer if args.tokenizer not in ("bpe", "gpt2") else None, args.init_from)
    else:
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
    seq_len = model.config.max_position_embeddings
    train_rows = _rows(texts, tokenizer, seq_len)
    if args.lora_r:
        from .peft_utils import get_lora_model

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
        use_cpu=_device(args.device) == "cpu",
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
        eval_rows = _rows(read_texts(args.eval_file), tokenizer, seq_len)
        ids = torch.stack([eval_rows[i]["input_ids"] for i in range(len(eval_rows))])
        g = torch.Generator(device=model.device).manual_seed(args.seed)
        bound = perplexity_bound(
            model.eval(), ids, batch_size=args.batch_size, num_samples=args.eval_samples, generator=g
        )
        result["eval_perplexity_bound"] = bound.perplexity
        (Path(args.output_dir) / "eval_results.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


# --- generate ----------------------------------------------------------------------------------
def cmd_generate(args):
    import torch

    from .generation import BlockDiffusionGenerationMixin

    model = load_model(args.model, args.device, args.dtype)
    tokenizer = load_tokenizer(args.tokenizer, args.model)
    gen = {"num_inference_steps": args.steps} if args.steps else {}
    for name in ("sampler", "temperature", "top_k", "top_p"):
        if getattr(args, name) is not None:
            gen[name] = getattr(args, name)
    if args.sampler_kwargs is not None:
        gen["sampler_kwargs"] = args.sampler_kwargs
    if args.num_samples > 1:
        gen["num_return_sequences"] = args.num_samples
    device = model.device
    input_ids = infill_mask = None
    prompt_length = 0
    if args.infill is not None:
        ids, holes = parse_infill_pattern(args.infill, tokenizer)
        if ids.numel() > model.config.max_position_embeddings:
            raise CLIError(
                f"the infill pattern is {ids.numel()} tokens, longer than the model's {model.config.max_position_embeddings}"
            )
        input_ids, infill_mask = ids[None].to(device), holes[None].to(device)
    else:
        if args.prompt:
            ids = tokenizer(args.prompt, add_special_tokens=False)["input_ids"]
            if not ids:
                raise CLIError("--prompt: the prompt is empty after tokenization")
            input_ids, prompt_length = torch.tensor([ids], device=device), len(ids)
        if args.max_new_tokens:
            if input_ids is None:
                gen["max_length"] = args.max_new_tokens
            else:
                gen["max_new_tokens"] = args.max_new_tokens
        else:
            gen["max_length"] = args.length or model.config.max_position_embeddings

    gc = model._prepare_generation_config(None, dict(gen))
    steps = gc.num_inference_steps + (1 if gc.noise_removal else 0)
    live = args.live if args.live is not None else sys.stdout.isatty()
    streamer = None
    if live:
        from .streamers import LiveDenoisingStreamer

        streamer = LiveDenoisingStreamer(
            tokenizer,
            mask_token_id=getattr(model.config, "mask_token_id", None),
            total_steps=None if isinstance(model, BlockDiffusionGenerationMixin) else steps,
            interactive=True,
        )
    out = model.generate(
        input_ids=input_ids,
        infill_mask=infill_mask,
        seed=args.seed,
        streamer=streamer,
        progress_bar=not live and not args.quiet,
        return_dict_in_generate=True,
        output_trajectory=args.save_trajectory is not None,
        **gen,
    )
    sequences = out.sequences.cpu()
    texts = tokenizer.batch_decode(sequences, skip_special_tokens=True)
    if args.save_trajectory is not None:
        from .visualization import save_trajectory

        kwargs = {"prompt_length": prompt_length}
        if infill_mask is not None:
            kwargs = {"fixed": ~infill_mask[0].cpu()}
        save_trajectory(
            args.save_trajectory,
            out.trajectory,
            tokenizer,
            mask_token_id=getattr(model.config, "mask_token_id", None),
            **kwargs,
        )
        print(f"saved the denoising trajectory to {args.save_trajectory}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"text": t, "ids": s.tolist()} for t, s in zip(texts, sequences)]))
    elif not live:
        print("\n\n".join(texts))
    return 0


# --- eval --------------------------------------------------------------------------------------
def cmd_eval(args):
    import torch

    model = load_model(args.model, args.device)
    tokenizer = load_tokenizer(args.tokenizer, args.model)
    seq_len = args.seq_len or model.config.max_position_embeddings
    if seq_len > model.config.max_position_embeddings:
        raise CLIError(f"--seq-len {seq_len} exceeds the model's length {model.config.max_position_embeddings}")
    rows = _rows(read_texts(args.files), tokenizer, seq_len)
    ids = torch.stack([rows[i]["input_ids"] for i in range(len(rows))])
    if args.max_sequences:
        ids = ids[: args.max_sequences]
    result = score_rows(model, ids, args.batch_size, args.num_samples, args.seed, progress=not args.quiet)
    print(json.dumps(result))
    return 0


# --- convert -----------------------------------------------------------------------------------
def converters() -> dict:
    """model_type -> the official-checkpoint converter of every registered method that has one
    (``hf_ddlm.models.<m>.convert_<m>_checkpoint.convert_official_<m>``)."""
    import importlib

    from .models.auto import MODELS

    found = {}
    for config_class, _ in MODELS:
        mt = config_class.model_type
        try:
            module = importlib.import_module(f"hf_ddlm.models.{mt}.convert_{mt}_checkpoint")
        except ModuleNotFoundError:
            continue
        function = getattr(module, f"convert_official_{mt}", None)
        if function is not None:
            found[mt] = function
    return found


def _detect_method(src: Path, available) -> str:
    config_path = src / "config.json"
    if not config_path.is_file():
        raise CLIError(f"{src} holds no config.json: not a checkpoint folder")
    config = json.loads(config_path.read_text())
    if config.get("model_type") in available:
        return config["model_type"]
    from .models.sedd.configuration_sedd import is_official_sedd_config

    if is_official_sedd_config(config) and "sedd" in available:
        return "sedd"
    raise CLIError(f"cannot tell the method of {src}; pass --method (one of {sorted(available)})")


def cmd_convert(args):
    available = converters()
    method = args.method if args.method != "auto" else _detect_method(args.src, available)
    if method not in available:
        raise CLIError(f"--method: no converter for '{method}'; available: {sorted(available)}")
    out = available[method](args.src, args.dst, overwrite=args.overwrite)
    print(json.dumps({"method": method, "output_dir": str(out)}))
    return 0


# --- export ------------------------------------------------------------------------------------
def cmd_export(args):
    import torch

    from .export import export_model, push_to_hub

    model = load_model(args.model, "cpu")
    tokenizer = None
    try:
        tokenizer = load_tokenizer(args.tokenizer, args.model)
    except CLIError:
        if args.tokenizer:
            raise
        print(f"{PROG} export: no tokenizer in {args.model}; exporting the model alone", file=sys.stderr)
    evaluation = None
    if args.eval_file:
        if tokenizer is None:
            raise CLIError("--eval-file needs a tokenizer")
        rows = _rows(read_texts(args.eval_file), tokenizer, model.config.max_position_embeddings)
        ids = torch.stack([rows[i]["input_ids"] for i in range(len(rows))])
        scored = score_rows(model, ids, args.batch_size, args.eval_samples, args.seed)
        evaluation = {
            "perplexity": scored["perplexity_bound"],
            "dataset": ", ".join(Path(f).name for f in args.eval_file),
            "num_tokens": scored["num_tokens"],
            "num_samples": args.eval_samples,
        }
    card = {"training_data": args.training_data, "evaluation": evaluation, "license": args.license}
    if args.push_to_hub:
        commit = push_to_hub(model, args.push_to_hub, tokenizer=tokenizer, private=args.private, **card)
        print(json.dumps({"repo_id": args.push_to_hub, "commit": getattr(commit, "oid", None)}))
        if args.output_dir is None:
            return 0
    if args.output_dir is None:
        raise CLIError("give OUTPUT_DIR, --push-to-hub REPO_ID, or both")
    folder = export_model(
        model, args.output_dir, tokenizer=tokenizer, repo_id=args.push_to_hub, overwrite=args.overwrite, **card
    )
    print(json.dumps({"output_dir": str(folder), "files": sorted(p.name for p in folder.iterdir())}))
    return 0


# --- the parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'hf-ddlm COMMAND --help' for the options of a command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
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
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--grad-accum", type=positive_int, default=1)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: only at the end)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    p.add_argument(
        "--lora-r", type=positive_int, help="train LoRA adapters of this rank (with --init-from), merged at the end"
    )
    p.add_argument("--eval-file", type=existing_file, nargs="+", help="held-out text: report the ELBO perplexity bound")
    p.add_argument("--eval-samples", type=positive_int, default=4, help="Monte-Carlo draws of t per held-out sequence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "generate",
        help="sample text, with a live view of the denoising",
        description="Generate by iterative denoising: unconditionally, after a prompt, or into the holes of an "
        "infilling pattern ('The [[3]] sat on the [[2]].': [[N]] is N tokens to generate).",
    )
    p.add_argument("model", type=existing_dir, help="a model folder")
    p.add_argument("--tokenizer", type=existing_path, help="a tokenizer folder (default: the model folder)")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--prompt", help="text to continue")
    cond.add_argument("--infill", help="a pattern with holes [[N]], e.g. 'The [[4]] sat on the [[2]].'")
    p.add_argument("--length", type=positive_int, help="total length in tokens (default: the model's)")
    p.add_argument("--max-new-tokens", type=positive_int, help="tokens to generate after the prompt")
    p.add_argument("--num-samples", type=positive_int, default=1)
    p.add_argument("--sampler", help="a registered sampler (analytic, euler, ancestral, ...); default: the model's")
    p.add_argument("--sampler-kwargs", type=json.loads, help="JSON keyword arguments of the sampler")
    p.add_argument("--steps", type=positive_int, help="denoising steps (num_inference_steps)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=positive_int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--save-trajectory", type=Path, help="save the denoising as .png (strip), .gif or .html")
    view = p.add_mutually_exclusive_group()
    view.add_argument(
        "--live",
        dest="live",
        action="store_true",
        default=None,
        help="live view of the denoising (default on a terminal)",
    )
    view.add_argument(
        "--no-live", dest="live", action="store_false", help="no live view: a progress bar, then the text"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the samples as JSON")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "eval",
        help="ELBO perplexity bound on text files",
        description="Upper bound on the perplexity of text files, exp(NELBO / tokens), with a progress bar. "
        "The text is cut into rows of --seq-len tokens.",
    )
    p.add_argument("model", type=existing_dir)
    p.add_argument("files", type=existing_file, nargs="+", help="UTF-8 text files")
    p.add_argument("--tokenizer", type=existing_path)
    p.add_argument("--seq-len", type=positive_int, help="row length (default: the model's)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--num-samples", type=positive_int, default=4, help="Monte-Carlo draws of t per row")
    p.add_argument("--max-sequences", type=positive_int, help="score only the first N rows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "convert",
        help="convert an official checkpoint to hf_ddlm's format",
        description="Convert an official checkpoint folder (louaaron/sedd-*, kuleshov-group/mdlm-owt, ...) into an "
        "hf_ddlm folder that AutoModel.from_pretrained loads.",
    )
    p.add_argument("src", type=existing_dir)
    p.add_argument("dst", type=Path)
    p.add_argument("--method", default="auto", help="the model_type (sedd, mdlm, ...); default: read from the folder")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "export",
        help="write a self-contained Hub folder (and push it)",
        description="Write a folder that loads with transformers alone (trust_remote_code=True): generated "
        "modeling/configuration/generation files, auto_map, generation_config.json and a model card.",
    )
    p.add_argument("model", type=existing_dir)
    p.add_argument("output_dir", type=Path, nargs="?", default=None)
    p.add_argument("--tokenizer", type=existing_path)
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload to this Hub repository")
    p.add_argument("--private", action="store_true")
    p.add_argument("--training-data", help="what the model was trained on (model card)")
    p.add_argument("--license", help="a license id for the model card")
    p.add_argument("--eval-file", type=existing_file, nargs="+", help="measure the ELBO perplexity for the model card")
    p.add_argument("--eval-samples", type=positive_int, default=4)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    # handled in main() before parsing: every argument after "lm-eval" goes to lm_eval's own parser
    sub.add_parser(
        "lm-eval",
        help="lm-evaluation-harness's command line with '--model hf_ddlm' registered "
        "('hf-ddlm lm-eval run --help' shows its options)",
        add_help=False,
    )
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lm-eval"]:  # everything after it is lm_eval's (argparse would claim --model etc.)
        from .lm_eval_adapter import cli_evaluate

        return cli_evaluate(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and not args.config and not args.init_from:
        print(
            f"{PROG} train: error: give --config (a model configuration) or --init-from (a trained model)",
            file=sys.stderr,
        )
        return 2
    try:
        return args.func(args)
    except (CLIError, ValueError, FileNotFoundError) as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
