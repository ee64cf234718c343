"""``hf-ddlm eval``: the ELBO upper bound on the perplexity of text files, exp(NELBO / tokens)."""

from __future__ import annotations

import json

from .arguments import add_shared, existing_file, positive_int
from .common import CLIError, load_model, load_tokenizer, read_token_rows, score_rows


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="ELBO perplexity bound on text files",
        description="Upper bound on the perplexity of text files, exp(NELBO / tokens), with a progress bar. "
        "The text is cut into rows of --seq-len tokens.",
    )
    add_shared(p, "model")
    p.add_argument("files", type=existing_file, nargs="+", help="UTF-8 text files")
    add_shared(p, "--tokenizer")
    p.add_argument("--seq-len", type=positive_int, help="row length (default: the model's)")
    add_shared(p, "--batch-size")
    p.add_argument("--num-samples", type=positive_int, default=4, help="Monte-Carlo draws of t per row")
    p.add_argument("--max-sequences", type=positive_int, help="score only the first N rows")
    add_shared(p, "--seed", "--device", "--quiet")
    p.set_defaults(func=run)


def run(args) -> int:
    model = load_model(args.model, args.device)
    tokenizer = load_tokenizer(args.tokenizer, args.model)
    seq_len = args.seq_len or model.config.max_position_embeddings
    if seq_len > model.config.max_position_embeddings:
        raise CLIError(f"--seq-len {seq_len} exceeds the model's length {model.config.max_position_embeddings}")
    ids = read_token_rows(args.files, tokenizer, seq_len)
    if args.max_sequences:
        ids = ids[: args.max_sequences]
    result = score_rows(model, ids, args.batch_size, args.num_samples, args.seed, progress=not args.quiet)
    print(json.dumps(result))
    return 0


__all__ = ["add_parser", "run"]
