"""``hf-ddlm export``: a self-contained Hub folder (remote code that needs only transformers) with a
model card, optionally pushed to the Hub; see :mod:`hf_ddlm.export`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .arguments import add_shared
from .common import PROG, CLIError, load_model, load_tokenizer, read_token_rows, score_rows


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a self-contained Hub folder (and push it)",
        description="Write a folder that loads with transformers alone (trust_remote_code=True): generated "
        "modeling/configuration/generation files, auto_map, generation_config.json and a model card.",
    )
    add_shared(p, "model")
    p.add_argument("output_dir", type=Path, nargs="?", default=None)
    add_shared(p, "--tokenizer")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload to this Hub repository")
    p.add_argument("--private", action="store_true")
    p.add_argument("--training-data", help="what the model was trained on (model card)")
    p.add_argument("--license", help="a license id for the model card")
    add_shared(p, "--eval-file", help="measure the ELBO perplexity for the model card")
    add_shared(p, "--eval-samples", "--batch-size", "--seed", "--overwrite")
    p.set_defaults(func=run)


def _evaluation(args, model, tokenizer) -> dict | None:
    """The model card's evaluation entry: the ELBO perplexity bound on ``--eval-file``."""
    if not args.eval_file:
        return None
    if tokenizer is None:
        raise CLIError("--eval-file needs a tokenizer")
    ids = read_token_rows(args.eval_file, tokenizer, model.config.max_position_embeddings)
    scored = score_rows(model, ids, args.batch_size, args.eval_samples, args.seed)
    return {
        "perplexity": scored["perplexity_bound"],
        "dataset": ", ".join(Path(f).name for f in args.eval_file),
        "num_tokens": scored["num_tokens"],
        "num_samples": args.eval_samples,
    }


def run(args) -> int:
    from ..export import export_model, push_to_hub

    model = load_model(args.model, "cpu")
    tokenizer = None
    try:
        tokenizer = load_tokenizer(args.tokenizer, args.model)
    except CLIError:
        if args.tokenizer:
            raise
        print(f"{PROG} export: no tokenizer in {args.model}; exporting the model alone", file=sys.stderr)
    evaluation = _evaluation(args, model, tokenizer)
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


__all__ = ["add_parser", "run"]
