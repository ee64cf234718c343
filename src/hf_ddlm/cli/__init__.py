"""``hf-ddlm``: train, sample, evaluate, convert and export discrete diffusion LMs from a shell.

    hf-ddlm train    --config modeling_configs/mdlm-owt --train-file corpus.txt --output-dir out/mdlm
    hf-ddlm generate out/mdlm --prompt "To be, or not" --steps 128 --save-trajectory denoising.png
    hf-ddlm generate out/mdlm --infill "The [[4]] sat on the [[2]]." --sampler ancestral
    hf-ddlm eval     out/mdlm held_out.txt --num-samples 8
    hf-ddlm convert  path/to/louaaron-sedd-small out/sedd-small
    hf-ddlm export   out/mdlm out/mdlm-hub [--push-to-hub user/mdlm-small]
    hf-ddlm compare  --preset small --output-dir runs/compare [--methods ar mdlm] [--resume]
    hf-ddlm lm-eval  --model hf_ddlm --model_args pretrained=out/mdlm --tasks my_task --include_path tasks/

Every subcommand has ``--help``. Errors in the arguments (a path that does not exist, a malformed
infilling pattern) exit with status 2 and a one-line message.

One module per subcommand (``train``, ``generate``, ``evaluate`` for ``eval``, ``convert``,
``export``, ``lm_eval``, ``compare``), each with ``add_parser(subparsers)`` and ``run``; the arguments they share
are defined once in :mod:`.arguments`, the loading and scoring they share in :mod:`.common`.
"""

from __future__ import annotations

import argparse
import sys

from . import compare, convert, evaluate, export, generate, lm_eval, train
from .common import PROG, CLIError

# in the order of ``hf-ddlm --help``
COMMANDS = (train, generate, evaluate, convert, export, lm_eval, compare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'hf-ddlm COMMAND --help' for the options of a command.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [lm_eval.COMMAND]:  # everything after it is lm_eval's
        return lm_eval.run(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, ValueError, FileNotFoundError) as error:
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2


__all__ = ["COMMANDS", "CLIError", "build_parser", "main"]
