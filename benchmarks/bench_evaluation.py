"""Wall time of the cheap measures: one seed of quick MQAR and quick LM on one CPU thread; and a
candidate's full evaluation on the proxy with the baseline cached.

    python benchmarks/bench_evaluation.py                          # examples/deltanet.lin
    python benchmarks/bench_evaluation.py --mixer examples/gla.lin --tasks mqar --seeds 2
    # a hand-written mixer of tests/linarch_testing/mixers.py:
    python benchmarks/bench_evaluation.py --test-mixer linear_attention
    # compare() end to end, DeltaNet's runs trained first (not timed) into the store's cache:
    python benchmarks/bench_evaluation.py --full-evaluation examples/gated_deltanet.lin \
        --preset proxy --workers 2 --store runs/bench_eval.sqlite

Prints, per task and seed, the wall time (data, model, training and evaluation) and the CPU
time of the process (close to the wall time of an idle core when the machine is shared), the
training throughput in tokens per second and the task metric; `--json` writes the same rows.
The target is quick MQAR (2 layers, d_model 64) in at most 3 minutes per seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from linarch.evaluation.mixers import MixerSpec, load_mixer
from linarch.evaluation.presets import Preset, TaskKind, budget_for
from linarch.evaluation.trainer import train_problem

ROOT = Path(__file__).resolve().parent.parent


def test_mixer(name: str) -> tuple[MixerSpec, object]:
    """A hand-written mixer from tests/linarch_testing/mixers.py, with its resolver installed."""
    sys.path.insert(0, str(ROOT / "tests"))
    from linarch_testing import mixers

    return mixers.spec(name), mixers.install()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixer", default=str(ROOT / "examples" / "deltanet.lin"))
    parser.add_argument("--test-mixer", default=None,
                        help="a mixer of tests/linarch_testing/mixers.py")
    parser.add_argument("--tasks", nargs="+", default=["mqar", "lm"],
                        choices=[t.value for t in TaskKind])
    parser.add_argument("--preset", default="quick", choices=[p.value for p in Preset])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--full-evaluation", type=Path, default=None, metavar="CANDIDATE.lin",
                        help="time compare(candidate, DeltaNet) with DeltaNet's runs cached")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", type=Path, default=Path("runs/bench_evaluation.sqlite"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.full_evaluation is not None:
        return full_evaluation(args)

    if args.test_mixer:
        mixer, context = test_mixer(args.test_mixer)
        context.__enter__()
    else:
        mixer = load_mixer(args.mixer)
    rows = []
    print(f"mixer {mixer.name}, preset {args.preset}, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    for task in args.tasks:
        budget = budget_for(TaskKind(task), Preset(args.preset))
        for seed in range(args.seeds):
            started, cpu_started = time.perf_counter(), time.process_time()
            tokens, train_s, metrics = 0, 0.0, {}
            for problem, config in budget.problems:
                config = type(config)(**{**vars(config), "seed": seed})
                result, _ = train_problem(problem, mixer, problem.shape, config,
                                          device=torch.device("cpu"))
                tokens += result.timings.tokens_seen
                train_s += result.timings.train_s
                metrics[problem.name] = {"outcome": result.outcome.value,
                                         problem.metric.name: result.metric(problem.metric.name),
                                         "steps": result.steps}
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            row = {"task": task, "preset": args.preset, "seed": seed, "mixer": mixer.name,
                   "wall_s": wall, "cpu_s": cpu, "train_s": train_s, "tokens": tokens,
                   "tokens_per_s": tokens / train_s if train_s else 0.0, "metrics": metrics}
            rows.append(row)
            shown = ", ".join(f"{k}={v:.4f}" for m in metrics.values() for k, v in m.items()
                              if isinstance(v, float))
            print(f"  {task:5s} seed {seed}: {wall:7.1f} s wall ({cpu:.1f} s CPU), "
                  f"{row['tokens_per_s']:9,.0f} tokens/s, {shown}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def full_evaluation(args: argparse.Namespace) -> int:
    """A candidate's full evaluation (learning-rate choice and every seed the schedule asks for)
    against DeltaNet, whose runs are trained first into the run cache and not timed."""
    import os

    from linarch.evaluation.compare import compare
    from linarch.evaluation.report import summary
    from linarch.evaluation.run_cache import RunCache
    from linarch.evaluation.seeds import SeedSchedule
    from linarch.evaluation.store import ExperimentStore

    budget = budget_for(TaskKind.MQAR, Preset(args.preset))
    store = ExperimentStore(args.store)
    cache = RunCache(store)
    baseline = load_mixer(ROOT / "examples" / "deltanet.lin")
    candidate = load_mixer(args.full_evaluation)
    print(f"warming the cache with DeltaNet's {budget.schedule.cap} seeds (not timed)...")
    compare(baseline, None, budget, SeedSchedule.fixed(budget.schedule.seeds), store, cache,
            workers=args.workers, log=lambda line: None)
    load = os.getloadavg()
    t0, c0 = time.perf_counter(), os.times()
    result = compare(candidate, baseline, budget, None, store, cache, workers=args.workers,
                     log=lambda line: print("  " + line, flush=True))
    wall = time.perf_counter() - t0
    c1 = os.times()
    cpu = sum(c1[:4]) - sum(c0[:4])
    print(summary(result))
    print(f"full evaluation of {candidate.name}: {wall:.0f} s wall, {cpu:.0f} CPU-s (this "
          f"process and its {args.workers} workers), {result.cost.runs_trained} runs trained, "
          f"{result.cost.baseline_cached} baseline runs from the cache; load average "
          f"{load[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
