"""`linarch train`: score a mixer against a baseline under one budget.

    linarch train MIXER.lin [--task mqar|mad|lm] [--preset proxy] [--seeds N | --precision H]
                  [--out runs/x] [--baseline examples/deltanet.lin | --no-baseline] [--store PATH]

Trains the mixer and the baseline on the same data, seeds and budget at matched parameter
counts (the budget's sequential seed schedule unless --seeds fixes the number, or --precision
asks for seeds until the interval is that narrow), then prints each
seed's metric, the mean paired difference with its interval, the verdict and what it means,
parameters, state, learning rates, FLOPs per token, throughput and the cost. Everything goes
through `linarch.evaluation.compare`, the path the search uses too.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

from .mixers import load_mixer, loader_is_default
from .param_match import MatchError, MatchTarget
from .presets import Budget, Hyper, Preset, TaskKind, budget_for
from .run_cache import RunCache
from .seeds import SeedSchedule
from .store import ExperimentStore

DEFAULT_BASELINE = "deltanet.lin"


def default_baseline() -> Path | None:
    """examples/deltanet.lin as installed with linarch, if present."""
    from linarch.api import example_path

    path = example_path(DEFAULT_BASELINE.removesuffix(".lin"))
    return path if path.is_file() else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linarch train",
        description="Train a mixer and a baseline under one budget and compare them.",
    )
    parser.add_argument("mixer", help="the candidate mixer (.lin file)")
    parser.add_argument("--task", choices=[t.value for t in TaskKind], default="mqar")
    parser.add_argument("--preset", choices=[p.value for p in Preset], default="proxy",
                        help="budget (default: proxy, the calibrated one)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="a fixed number of seeds (default: the preset's sequential "
                             "schedule, which adds seeds until the verdict is clear)")
    parser.add_argument("--precision", type=float, default=None, metavar="HALF_WIDTH",
                        help="add seeds until the paired interval's half-width is at most "
                             "this (metric units, e.g. 0.03 accuracy), up to --max-seeds; "
                             "the interval is then at 1 - alpha/2")
    parser.add_argument("--max-seeds", type=int, default=40,
                        help="the cap of --precision (default 40)")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed")
    parser.add_argument("--out", type=Path, default=None, help="run directory to write")
    parser.add_argument("--baseline", default=None,
                        help="baseline mixer (.lin); default: the shipped DeltaNet example")
    parser.add_argument("--no-baseline", action="store_true", help="train the mixer alone")
    parser.add_argument("--store", type=Path, default=None,
                        help="SQLite experiment store; also caches finished runs, so the "
                             "baseline is trained once per budget")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=None,
                        help="training processes (default: up to 4 CPU cores, 1 on a GPU)")
    parser.add_argument("--steps", type=int, default=None, help="override the training steps")
    parser.add_argument("--lr", type=float, default=None,
                        help="one learning rate instead of the preset's grid")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds per training run before it stops with TIMEOUT")
    parser.add_argument("--memory-limit-mb", type=float, default=None,
                        help="memory per run before it stops with OOM")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="allowed relative parameter mismatch (default: the preset's, 5%%)")
    parser.add_argument("--match", choices=[t.value for t in MatchTarget], default="params",
                        help="match non-embedding parameters (default) or state size, or "
                             "none: each mixer at its declared width (Zoology's protocol)")
    parser.add_argument("--data", default=None,
                        help="lm task: text/json/parquet files, a directory, or a hub dataset")
    parser.add_argument("--tokenizer", default=None, help="lm task: 'byte' or a tokenizer name")
    parser.add_argument("--text-field", default="text", help="lm task: the column holding text")
    parser.add_argument("--checkpoints", action="store_true", help="save the trained models")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: when writing to a terminal)")
    return parser


def _budget(args: argparse.Namespace) -> Budget:
    task, preset = TaskKind(args.task), Preset(args.preset)
    text = None
    if task is TaskKind.LM and (args.data or args.tokenizer):
        base = budget_for(task, preset).problems[0][0].text
        text = replace(base, source=args.data or base.source,
                       tokenizer=args.tokenizer or base.tokenizer, text_field=args.text_field)
    budget = budget_for(task, preset, text)
    overrides = {k: v for k, v in (("steps", args.steps), ("lr", args.lr),
                                   ("time_limit_s", args.time_limit),
                                   ("memory_limit_mb", args.memory_limit_mb)) if v is not None}
    if overrides:
        problems = []
        for problem, config in budget.problems:
            config = replace(config, **overrides)
            if "steps" in overrides:
                config = replace(config, eval_every=max(1, config.steps // 5))
            problems.append((problem, config))
        budget = replace(budget, problems=tuple(problems))
    if args.lr is not None:
        budget = replace(budget, grid=(Hyper(args.lr),))
    if args.tolerance is not None:
        budget = replace(budget, tolerance=args.tolerance)
    return budget


def _workers(args: argparse.Namespace, device: torch.device) -> int:
    if args.workers is not None:
        return max(1, args.workers)
    if device.type != "cpu" or not loader_is_default():
        return 1  # a replaced mixer loader does not reach spawned worker processes
    return max(1, min(4, os.cpu_count() or 1))


def _precision_error(args: argparse.Namespace) -> str | None:
    """What is wrong with --precision and its companions, if anything."""
    if args.precision is None:
        return None
    if args.seeds is not None:
        return "--precision and --seeds both set the seeds; pass one"
    if args.no_baseline:
        return "--precision needs a baseline to compare with; drop --no-baseline"
    if not (args.precision > 0 and math.isfinite(args.precision)):
        return "--precision must be a positive half-width, e.g. 0.03"
    if args.max_seeds < 5:
        return "--max-seeds must be at least 5 (the first look)"
    return None


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of `linarch train`; returns the process exit status."""
    from .compare import Role, compare
    from .report import summary
    from .rundir import write_comparison
    from .trainer import default_device

    args = build_parser().parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        print("error: --seeds must be at least 1", file=sys.stderr)
        return 2
    why = _precision_error(args)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        candidate = load_mixer(args.mixer)
        baseline = None
        if not args.no_baseline:
            path = args.baseline or default_baseline()
            if path is None:
                print("error: no baseline given and examples/deltanet.lin is not installed; "
                      "pass --baseline or --no-baseline", file=sys.stderr)
                return 2
            baseline = load_mixer(path)
    except Exception as exc:  # a compile error is the user's to read, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    budget = _budget(args)
    device = torch.device(args.device) if args.device else default_device()
    store = ExperimentStore(args.store) if args.store else None
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    seeds = None
    if args.precision is not None:
        seeds = SeedSchedule.until_precision(args.precision, cap=args.max_seeds,
                                             first=args.seed_offset)
    elif args.seeds is not None:
        seeds = SeedSchedule.fixed(range(args.seed_offset, args.seed_offset + args.seeds))
    elif args.seed_offset:
        s = budget.schedule
        seeds = SeedSchedule(tuple(x + args.seed_offset for x in s.seeds), s.looks)
    checkpoints = args.out / "checkpoints" if args.out and args.checkpoints else None
    try:
        result = compare(candidate, baseline, budget, seeds, store,
                         RunCache(store) if store else None, device=device,
                         workers=_workers(args, device), match=MatchTarget(args.match),
                         progress=progress, checkpoints=checkpoints,
                         run_dir=str(args.out or ""))
    except MatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        write_comparison(args.out, result)
    print(summary(result))
    if args.out is not None:
        print(f"run directory: {args.out}")
    if result.experiment_id is not None:
        print(f"store: {args.store} (experiment {result.experiment_id})")
    ok = all(not s.failed for s in result.scores if s.role is Role.CANDIDATE) and \
        not result.excluded
    return 0 if ok else 3


if __name__ == "__main__":
    raise SystemExit(train_main())
