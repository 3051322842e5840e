"""The ``linarch`` command: a thin shell over the public API.

No input produces a Python traceback: every failure becomes a located diagnostic or a one-line
error naming the fix (``--debug`` shows the traceback for bug reports).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from linarch.dsl.diagnostics import LinarchError, to_json


def _check(args: argparse.Namespace) -> int:
    from linarch.api import check, load_source

    all_diags = []
    failed = False
    for path in args.files:
        try:
            source = load_source(Path(path))
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}: error: cannot read the file ({exc.__class__.__name__}: {exc})",
                  file=sys.stderr)
            failed = True
            continue
        diags = check(source, chunk_size=args.chunk_size)
        all_diags.extend(diags)
        failed |= any(d.is_error for d in diags)
        if args.format == "text":
            for d in diags:
                print(d.render())
            if not diags:
                print(f"{path}: ok")
    if args.format == "json":
        print(to_json(all_diags))
    return 1 if failed else 0


def _show(args: argparse.Namespace) -> int:
    from linarch.api import load_source, show
    from linarch.dsl.pipeline import analyse
    from linarch.dsl.unit import Options

    source = load_source(Path(args.file))
    result = analyse(source, Options(args.chunk_size))
    print(show(source, chunk_size=args.chunk_size))
    return 0 if result.ok else 1


def _fmt(args: argparse.Namespace) -> int:
    from linarch.api import format_source, load_source

    status = 0
    for path in args.files:
        source = load_source(Path(path))
        try:
            text = format_source(source)
        except LinarchError as exc:
            for d in exc.diagnostics:
                print(d.render(), file=sys.stderr)
            status = 1
            continue
        if args.check:
            if text != source.text:
                print(f"{path}: would reformat")
                status = 1
        elif args.in_place:
            Path(path).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
    return status


def _compile(args: argparse.Namespace) -> int:
    from linarch.api import generate, load_source

    source = load_source(Path(args.file))
    text = generate(source, args.target, chunk_size=args.chunk_size)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(text.splitlines())} lines, target {args.target})")
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linarch", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="type-check, prove causality and linear cost")
    p.add_argument("files", nargs="+")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--chunk-size", type=int, default=64)
    p.set_defaults(func=_check)

    p = sub.add_parser("show", help="what the compiler understood: classes, costs, causality")
    p.add_argument("file")
    p.add_argument("--chunk-size", type=int, default=64)
    p.set_defaults(func=_show)

    p = sub.add_parser("fmt", help="print a program in canonical form")
    p.add_argument("files", nargs="+")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-i", "--in-place", action="store_true", help="rewrite the files")
    g.add_argument("--check", action="store_true", help="exit 1 if a file is not canonical")
    p.set_defaults(func=_fmt)

    p = sub.add_parser("compile", help="generate a standalone layer file (torch or triton)")
    p.add_argument("file")
    p.add_argument("--target", choices=("torch", "triton"), default="torch")
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.add_argument("--chunk-size", type=int, default=64)
    p.set_defaults(func=_compile)

    for name, adder in EXTENSIONS.items():
        adder(sub, name)
    return parser


def _forwarding(target: str, help: str) -> Callable[[argparse._SubParsersAction, str], None]:
    """A subcommand that hands its arguments, unparsed, to `target` ("module:function"), which
    has its own parser (and --help); the subsystem is imported only when the command runs."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        module, _, function = target.partition(":")
        rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        return getattr(importlib.import_module(module), function)(rest)

    def add(sub: argparse._SubParsersAction, name: str) -> None:
        p = sub.add_parser(name, help=help, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=run)

    return add


def _add_search(sub: argparse._SubParsersAction, name: str) -> None:
    from linarch.search.cli import add_subcommands

    add_subcommands(sub)
    for command in ("search", "report"):
        sub.choices[command].set_defaults(func=lambda args: args.handler(args))


# Subcommands that live with their subsystem register here.
EXTENSIONS: dict[str, Callable[[argparse._SubParsersAction, str], None]] = {
    "train": _forwarding("linarch.evaluation.cli:train_main",
                         "train a mixer and the DeltaNet baseline; compare with a 95%% CI"),
    "calibrate": _forwarding("linarch.evaluation.calibration:calibrate_main",
                             "run the reference mixers on a budget; table, rank agreement, A/A"),
    "lm-eval": _forwarding("linarch.evaluation.lm_eval_model:lm_eval_main",
                           "lm-evaluation-harness with the linarch model registered"),
    "search": _add_search,
}


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors of the search/config layer that are the user's to fix (one line, no traceback)."""
    try:
        from linarch.search.config import ConfigError
        from linarch.search.ledger import LLMError
        from linarch.search.rundir import RunDirError
    except ImportError:  # the search extra is not installed
        return ()
    return (ConfigError, RunDirError, LLMError)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["train"], ["calibrate"], ["lm-eval"]) and argv[1:2] != ["--"]:
        argv = [argv[0], "--", *argv[1:]]  # these harnesses own their options
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        print(f"linarch: error: {exc}", file=sys.stderr)
        return 1
    except LinarchError as exc:
        for d in exc.diagnostics:
            print(d.render(), file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as exc:
        if args.debug:
            raise
        print(f"linarch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("linarch: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug, reported without a traceback
        if args.debug:
            raise
        print(f"linarch: internal error: {exc.__class__.__name__}: {exc} "
              "(rerun with --debug for the traceback, and please report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "build_parser", "EXTENSIONS", "json"]
