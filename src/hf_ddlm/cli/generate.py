"""``hf-ddlm generate``: sample by iterative denoising, unconditionally, after a prompt or into the
holes of an infilling pattern, with a live view of the denoising and pictures of its trajectory."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..generation.infill import parse_infill_pattern
from .arguments import add_shared, positive_int
from .common import CLIError, load_model, load_tokenizer


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="sample text, with a live view of the denoising",
        description="Generate by iterative denoising: unconditionally, after a prompt, or into the holes of an "
        "infilling pattern ('The [[3]] sat on the [[2]].': [[N]] is N tokens to generate).",
        epilog=samplers_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_shared(p, "model", "--tokenizer")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--prompt", help="text to continue")
    cond.add_argument("--infill", help="a pattern with holes [[N]], e.g. 'The [[4]] sat on the [[2]].'")
    p.add_argument("--length", type=positive_int, help="total length in tokens (default: the model's)")
    p.add_argument("--max-new-tokens", type=positive_int, help="tokens to generate after the prompt")
    p.add_argument("--num-samples", type=positive_int, default=1)
    p.add_argument(
        "--sampler", help="a registered sampler that applies to the model (listed below); default: the model's"
    )
    p.add_argument("--sampler-kwargs", type=json.loads, help="JSON keyword arguments of the sampler")
    p.add_argument("--steps", type=positive_int, help="denoising steps (num_inference_steps)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=positive_int)
    p.add_argument("--top-p", type=float)
    add_shared(p, "--seed", default=None)
    add_shared(p, "--device")
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
    add_shared(p, "--quiet")
    p.add_argument("--json", action="store_true", help="print the samples as JSON")
    p.set_defaults(func=run)


def samplers_per_model_type() -> list[tuple[str, str, list[str]]]:
    """(model_type, graph, applicable sampler names) for every hf_ddlm model type and each graph its
    config accepts, derived with ``applicable_samplers`` from the default config's graph and schedule
    (no model is built)."""
    from ..generation.utils import applicable_samplers
    from ..models.auto import MODELS
    from ..processes import get_graph, get_schedule

    rows = []
    for config_class, model_class in MODELS:
        for graph_name in ("absorbing", "uniform"):
            try:
                config = config_class(graph=graph_name, vocab_size=8)
            except (ValueError, TypeError):
                continue
            if config.graph != graph_name:
                continue
            graph = get_graph(config.graph, config.vocab_size)
            if hasattr(config, "discrete_schedule"):  # D3PM steps on the T steps its config defines
                schedule = config.discrete_schedule()
            else:
                schedule = get_schedule(config.noise_schedule, **config.schedule_kwargs())
            rows.append((config.model_type, graph_name, applicable_samplers(model_class, graph, schedule)))
    return rows


def samplers_epilog() -> str:
    """The samplers that apply to each model type (derived from each sampler's needs and the model's
    output, graph and schedule: ``samplers_per_model_type``)."""
    lines = ["samplers per model type (graph): a sampler outside its model's list is refused"]
    lines += [f"  {model_type} ({graph}): {', '.join(names)}" for model_type, graph, names in samplers_per_model_type()]
    return "\n".join(lines)


def _generation_kwargs(args) -> dict:
    """The ``generate`` settings given on the command line (the model's defaults fill the rest)."""
    gen = {"num_inference_steps": args.steps} if args.steps else {}
    for name in ("sampler", "temperature", "top_k", "top_p"):
        if getattr(args, name) is not None:
            gen[name] = getattr(args, name)
    if args.sampler_kwargs is not None:
        gen["sampler_kwargs"] = args.sampler_kwargs
    if args.num_samples > 1:
        gen["num_return_sequences"] = args.num_samples
    return gen


def _conditioning(args, model, tokenizer, gen: dict):
    """``(input_ids, infill_mask, prompt_length)`` of ``--infill`` or ``--prompt``; sets the length in ``gen``."""
    import torch

    device = model.device
    input_ids = infill_mask = None
    prompt_length = 0
    if args.infill is not None:
        ids, holes = parse_infill_pattern(args.infill, tokenizer)
        if ids.numel() > model.config.max_position_embeddings:
            raise CLIError(
                f"the infill pattern is {ids.numel()} tokens, longer than the model's {model.config.max_position_embeddings}"
            )
        return ids[None].to(device), holes[None].to(device), prompt_length
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
    return input_ids, infill_mask, prompt_length


def run(args) -> int:
    model = load_model(args.model, args.device, args.dtype)
    tokenizer = load_tokenizer(args.tokenizer, args.model)
    gen = _generation_kwargs(args)
    input_ids, infill_mask, prompt_length = _conditioning(args, model, tokenizer, gen)

    gc = model._prepare_generation_config(None, dict(gen))
    steps = gc.num_inference_steps + (1 if gc.noise_removal else 0)
    live = args.live if args.live is not None else sys.stdout.isatty()
    streamer = None
    if live:
        from ..generation.block_decoding import BlockDiffusionGenerationMixin
        from ..streamers import LiveDenoisingStreamer

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
    # the samples first: they are the result, the picture (which may fail) only illustrates them
    if args.json:
        print(json.dumps([{"text": t, "ids": s.tolist()} for t, s in zip(texts, sequences)]), flush=True)
    elif not live:
        print("\n\n".join(texts), flush=True)
    if args.save_trajectory is not None:
        from ..visualization import save_trajectory

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
    return 0


__all__ = ["add_parser", "run"]
