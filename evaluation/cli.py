"""`linarch train`: score a mixer against a baseline under one budget.

    linarch train MIXER.lin --task {mqar,mad,lm} --preset quick --seeds 3 --out runs/x
                  [--baseline examples/deltanet.lin | --no-baseline] [--store PATH]

Trains the mixer and the baseline on the same data, seeds and budget at matched parameter
counts, then prints each seed's metric, the mean paired difference with its 95% interval, the
verdict, parameters, FLOPs per token, state size and throughput.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from .mixers import load_mixer
from .presets import Budget, Preset, TaskKind, budget_for
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
    parser.add_argument("--preset", choices=[p.value for p in Preset], default="quick")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--seed-offset", type=int, default=0, help="first seed")
    parser.add_argument("--out", type=Path, default=None, help="run directory to write")
    parser.add_argument("--baseline", default=None,
                        help="baseline mixer (.lin); default: the shipped DeltaNet example")
    parser.add_argument("--no-baseline", action="store_true", help="train the mixer alone")
    parser.add_argument("--store", type=Path, default=None, help="SQLite experiment store")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--steps", type=int, default=None, help="override the training steps")
    parser.add_argument("--lr", type=float, default=None, help="override the learning rate")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds per training run before it stops with TIMEOUT")
    parser.add_argument("--memory-limit-mb", type=float, default=None,
                        help="memory per run before it stops with OOM")
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="allowed relative parameter mismatch")
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
    return budget


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of `linarch train`; returns the process exit status."""
    from .experiment import run_experiment

    args = build_parser().parse_args(argv)
    if args.seeds < 1:
        print("error: --seeds must be at least 1", file=sys.stderr)
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
    device = torch.device(args.device) if args.device else None
    store = ExperimentStore(args.store) if args.store else None
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    seeds = tuple(range(args.seed_offset, args.seed_offset + args.seeds))
    report = run_experiment(candidate, baseline, budget, seeds, out_dir=args.out, store=store,
                            device=device, progress=progress, save_checkpoints=args.checkpoints,
                            tolerance=args.tolerance)
    print(report.summary())
    if report.run_dir is not None:
        print(f"run directory: {report.run_dir}")
    if report.experiment_id is not None:
        print(f"store: {args.store} (experiment {report.experiment_id})")
    ok = all(s.outcome.value == "ok" for s in report.scores)
    return 0 if ok else 3


if __name__ == "__main__":
    raise SystemExit(train_main())
