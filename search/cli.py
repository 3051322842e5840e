"""Command line of the search: `run` (start or resume) and `report`.

    python -m linarch.search run CONFIG.toml --run-dir RUN [--executor ray --address ADDR]
    python -m linarch.search run --resume RUN
    python -m linarch.search report RUN

The top-level `linarch` command can mount the same subcommands with `add_subcommands`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from linarch.search.config import ConfigError
from linarch.search.ledger import LLMError
from linarch.search.rundir import RunDir, RunDirError


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("search", aliases=["run"], help="start or resume a search run")
    run.add_argument("config", nargs="?", help="the TOML configuration of a new run")
    run.add_argument("--run-dir", "--out", dest="run_dir", help="directory of the new run")
    run.add_argument("--ablation", choices=["best-of-n"],
                     help="best-of-n: parents are always the seed programs (the baseline that "
                          "evolution must beat)")
    run.add_argument("--resume", metavar="RUN", help="continue the run in RUN")
    run.add_argument("--executor", choices=["local", "ray"], help="override executor.kind")
    run.add_argument("--address", help="Ray cluster address (override executor.address)")
    run.add_argument("--workers", type=int, help="override executor.workers")
    run.add_argument("--progress", default="auto", choices=["auto", "plain", "rich", "none"])
    run.set_defaults(handler=run_command)

    report = subparsers.add_parser("report", help="leaderboard, plots and HTML of a run")
    report.add_argument("run", metavar="RUN")
    report.add_argument("--out", help="output folder (default RUN/report)")
    report.set_defaults(handler=report_command)


def run_command(args: argparse.Namespace) -> int:
    from linarch.search.session import create_run, override_executor, run_search

    if bool(args.resume) == bool(args.config):
        print("give either CONFIG (with --run-dir) or --resume RUN", file=sys.stderr)
        return 2
    if args.resume:
        run = RunDir.open(args.resume)
    else:
        if not args.run_dir:
            print("a new run needs --out RUN (or --run-dir RUN)", file=sys.stderr)
            return 2
        run = create_run(args.config, args.run_dir, ablation=args.ablation)
    executor = override_executor(
        run.config().executor, kind=args.executor, address=args.address, workers=args.workers
    )
    summary = run_search(run, executor=executor, progress=args.progress)
    best = "none" if summary.best_id is None else (
        f"{summary.best_id} ({summary.best_score:+.4f}"
        f"{', ' + summary.best_label if summary.best_label else ''})")
    print(
        f"{run.path}: stopped ({summary.reason}); {summary.candidates} candidates "
        f"({summary.proposals} proposed, {summary.rejected} rejected before training, free), "
        f"{summary.evaluated} evaluated with the seeds, {summary.race_jobs} racing "
        f"evaluations; best in selection {best}; LLM spend ${summary.spent_usd:.4f}"
    )
    if summary.confirmations:
        print("confirmation on fresh seeds (Holm-corrected; only this may say BETTER):")
        for verdict in summary.confirmations:
            print(f"  {verdict.line()}")
    return 0


def report_command(args: argparse.Namespace) -> int:
    from linarch.search.report import write_report

    out = write_report(RunDir.open(args.run), args.out)
    print(out / "index.html")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m linarch.search")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, RunDirError, LLMError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
