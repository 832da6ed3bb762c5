"""Command line: ``clip-backdoor-unlearn <command> ...`` (also ``python -m clip_backdoor_unlearn``).

Each command is one argparse sub-parser registered in ``_COMMANDS``; add a ``(name, add_arguments, run)``
entry to add a command.  Heavy imports (torch, transformers) happen inside ``run`` so that ``--help`` is
instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence


class UsageError(Exception):
    """Bad input a user can fix; reported as one line on stderr with exit status 2, without a traceback."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


# ------------------------------------------------------------------------------------------------------ audit


def _add_audit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model_dir", help="directory written by save_pretrained (a CLIPModel and its processor)"
    )
    parser.add_argument(
        "--faces",
        required=True,
        metavar="FOLDER",
        help="one sub-folder of images per person; the folder name is the name (underscores read as spaces "
        "when the name as written is not in the names file)",
    )
    parser.add_argument(
        "--names",
        required=True,
        metavar="NAMES.txt",
        help="candidate pool, one name per line; must include everyone "
        "with a sub-folder (the protocol uses ~1,000 names so that chance hits are rare)",
    )
    parser.add_argument(
        "--templates",
        metavar="TEMPLATES.txt",
        help="prompt templates, one per line with one '{}' (default: the 21 built-in IDIA prompts)",
    )
    parser.add_argument(
        "--min-correct-prompts",
        type=int,
        default=1,
        metavar="N",
        help="prompts that must vote for a person to count them as detected (default: 1)",
    )
    parser.add_argument(
        "--removed",
        metavar="NAMES.txt",
        help="names that were unlearned: also report the detection rate on them and on everyone else",
    )
    parser.add_argument("--output", metavar="RESULT.json",
                        help="write the full result (names included) as JSON; an existing file needs --force")
    parser.add_argument("--force", action="store_true", help="replace an existing --output file")
    parser.add_argument("--show-names", action="store_true",
                        help="print each person's name in the table (default: their index in sorted order)")
    parser.add_argument(
        "--batch-size", type=_positive_int, default=128, help="texts/images per forward pass (default: 128)"
    )
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--progress", action="store_true", help="show progress bars while embedding")


def _run_audit(args: argparse.Namespace) -> int:
    from .evaluation.audit import audit, read_lines, read_templates

    if args.output and os.path.lexists(args.output) and not args.force:
        raise UsageError("--output exists (it could be the names file); pass --force to replace it.")
    try:
        templates = read_templates(args.templates) if args.templates else None
        removed = read_lines(args.removed) if args.removed else None
        result = audit(
            args.model_dir,
            args.faces,
            args.names,
            templates=templates,
            min_correct_prompts=args.min_correct_prompts,
            batch_size=args.batch_size,
            device=args.device,
            show_progress_bar=args.progress,
        )
        report = result.to_dict()
        print(result.summary(show_names=args.show_names))
        if removed is not None:
            absent = sum(name not in result.people for name in removed)
            if absent:
                raise UsageError(f"{absent} name(s) in --removed have no images in --faces.")
            others = [name for name in result.people if name not in set(removed)]
            report["tpr_removed"] = result.tpr(removed)
            report["tpr_others"] = result.tpr(others) if others else None
            print(f"TPR on removed names: {report['tpr_removed']:.3f} ({len(removed)} people)")
            if others:
                print(f"TPR on everyone else: {report['tpr_others']:.3f} ({len(others)} people)")
    except (ValueError, FileNotFoundError, UsageError) as error:
        raise UsageError(str(error)) from error
    if args.output:  # written beside it, then moved in: a failure leaves the old file whole
        staging = f"{args.output}.tmp-{os.getpid()}"
        with open(staging, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2, ensure_ascii=False)
            file.write("\n")
        os.replace(staging, args.output)
        print("Wrote the --output file.")
    return 0


# ------------------------------------------------------------------------------------------------------- main

_COMMANDS: list[
    tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = [
    ("audit", "run the identity inference attack on a saved model", _add_audit_arguments, _run_audit),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clip-backdoor-unlearn",
        description="Remove named people from CLIP models with student-teacher backdoors, and audit "
        "the result.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text, add_arguments, run in _COMMANDS:
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(subparser)
        subparser.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status (0 success, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
