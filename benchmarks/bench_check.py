"""Time of `linarch check` per example, without interpreter start-up: the issue's target is under
100 ms per file.

    python benchmarks/bench_check.py                     # examples/*.lin, median of 20 runs
    python benchmarks/bench_check.py --runs 50 examples/kda.lin
    python benchmarks/bench_check.py --cold              # clear SymPy's cache before each run
    python benchmarks/bench_check.py --check             # exit 1 if a file misses the target

Each file is checked once to warm up (the grammar is built once per process), then `--runs`
times. The table gives medians: the wall time of the whole check, its CPU time (close to the wall
time of an idle machine when the machine is shared), and the CPU time of each stage: parsing,
lowering and the passes (typecheck, transitions, causality, complexity, stability).
`--cold` clears SymPy's global cache before every run, the worst case for a process that
checks many unrelated programs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from sympy.core.cache import clear_cache

from linarch.dsl.diagnostics import Reporter
from linarch.dsl.lower import lower
from linarch.dsl.parser import parse
from linarch.dsl.pipeline import PASSES
from linarch.dsl.source import Source
from linarch.dsl.unit import Options, Unit

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 100.0


def check_once(text: str, name: str) -> dict[str, float]:
    """One `linarch check` of a program (the pipeline of linarch.dsl.pipeline.analyse): CPU
    milliseconds per stage, and the whole check's wall ("total") and CPU ("cpu") milliseconds.
    Stages are timed in CPU time, which other processes on a shared machine do not inflate."""
    cpu = time.process_time
    times: dict[str, float] = {}
    wall0, cpu0 = time.perf_counter(), cpu()
    source = Source(text, name)
    report = Reporter(source)
    program = parse(source, report)
    times["parse"] = cpu() - cpu0
    if program.header is not None:
        start = cpu()
        unit = Unit(lower(program, source, report), Options())
        times["lower"] = cpu() - start
        for pass_name, run, needs_clean in PASSES:
            start = cpu()
            if not (needs_clean and report.has_errors):
                unit = run(unit, report)
            times[pass_name] = cpu() - start
    sorted(report.diagnostics, key=lambda d: (d.line, d.col))
    times["cpu"] = cpu() - cpu0
    times["total"] = time.perf_counter() - wall0
    return {k: 1000 * v for k, v in times.items()}


def measure(path: Path, runs: int, cold: bool) -> dict[str, float]:
    text = path.read_text(encoding="utf-8")
    check_once(text, str(path))  # warm-up
    samples = []
    for _ in range(runs):
        if cold:
            clear_cache()
        samples.append(check_once(text, str(path)))
    keys = samples[0].keys()
    return {k: statistics.median(s.get(k, 0.0) for s in samples) for k in keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--cold", action="store_true", help="clear SymPy's cache before each run")
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {TARGET_MS:g} ms")
    args = parser.parse_args(argv)
    files = args.files or sorted((ROOT / "examples").glob("*.lin"))
    stages = ["parse", "lower"] + [name for name, _, _ in PASSES]
    header = ["example", "wall ms", "cpu ms"] + [f"{s} (cpu)" for s in stages]
    print(f"linarch check, median of {args.runs} runs{' (cold SymPy cache)' if args.cold else ''}")
    print(" | ".join(header))
    print("|".join("---" for _ in header))
    worst = 0.0
    totals = []
    for path in files:
        m = measure(path, args.runs, args.cold)
        worst = max(worst, m["cpu"])
        totals.append(m["cpu"])
        cells = [path.stem, f"{m['total']:.1f}", f"{m['cpu']:.1f}"]
        cells += [f"{m.get(s, 0.0):.1f}" for s in stages]
        print(" | ".join(cells))
    print(f"CPU time: mean {statistics.mean(totals):.1f} ms, max {worst:.1f} ms per file "
          f"(target < {TARGET_MS:g} ms: {'met' if worst < TARGET_MS else 'MISSED'})")
    return 1 if args.check and worst >= TARGET_MS else 0


if __name__ == "__main__":
    sys.exit(main())
