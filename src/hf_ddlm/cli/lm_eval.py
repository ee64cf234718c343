"""``hf-ddlm lm-eval``: lm-evaluation-harness's own command line with ``--model hf_ddlm`` registered.

Every argument after ``lm-eval`` belongs to lm_eval's parser (argparse would claim ``--model`` and
the like), so :func:`hf_ddlm.cli.main` hands them over before parsing; the sub-parser here only
lists the command in ``hf-ddlm --help``.
"""

from __future__ import annotations

COMMAND = "lm-eval"


def add_parser(subparsers) -> None:
    subparsers.add_parser(
        COMMAND,
        help="lm-evaluation-harness's command line with '--model hf_ddlm' registered "
        "('hf-ddlm lm-eval run --help' shows its options)",
        add_help=False,
    )


def run(argv: list[str]) -> int:
    """Run lm_eval's command line on ``argv`` (the arguments after ``lm-eval``)."""
    from ..lm_eval_adapter import cli_evaluate

    return cli_evaluate(argv)


__all__ = ["COMMAND", "add_parser", "run"]
