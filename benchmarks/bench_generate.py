"""Time to generate each example's files: the kernels issue's target is under 0.5 s per file.

    python benchmarks/bench_generate.py                  # every example, torch and triton
    python benchmarks/bench_generate.py --runs 5 examples/kda.lin
    python benchmarks/bench_generate.py --check          # exit 1 if a file misses the target

Three numbers per file and target, CPU seconds (a busy neighbour on a shared machine does not
inflate them):
- import: a fresh Python process imports what generation needs (linarch, the front end with
  SymPy and networkx, the emitters); paid once per process, whatever the number of files;
- first: that process then generates the file, the first generation of the process (lazy
  templates, SymPy's empty cache): what `linarch compile` costs per file; the target applies
  to this number;
- warm: the same process generates it again with every compile cache cleared (the front end's
  and the build's), the cost a search pays per candidate; median of `--runs`.

This is a benchmark, not a test: a timed assertion in the suite fails on a loaded machine and
proves nothing on an idle one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 0.5
TARGETS = ("torch", "triton")

_CHILD = """
import json, sys, time
cpu = time.process_time
start = cpu()
import linarch
from linarch.codegen.build import analysed, build
imported = cpu() - start
path, target, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = {"kernel_dtype": "fp32"} if target == "triton" else {}
start = cpu()
linarch.generate(path, target, **options)
first = cpu() - start
warm = []
for _ in range(runs):
    analysed.cache_clear()
    build.cache_clear()
    t = cpu()
    linarch.generate(path, target, **options)
    warm.append(cpu() - t)
print(json.dumps({"import": imported, "first": first, "warm": warm}))
"""


def measure(path: Path, target: str, runs: int) -> tuple[float, float, float]:
    """CPU seconds of (the imports, the first generation, the median warm generation)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), target, str(runs)],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return data["import"], data["first"], statistics.median(data["warm"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=3, help="warm repeats per file")
    parser.add_argument("--check", action="store_true",
                        help=f"exit 1 when a first generation takes {TARGET_S} s or more")
    args = parser.parse_args(argv)
    files = args.files or sorted((ROOT / "examples").glob("*.lin"))
    print(f"| file | target | import (s) | first (s) | warm (s) | first < {TARGET_S} s |")
    print("|---|---|---|---|---|---|")
    missed = 0
    for path in files:
        for target in TARGETS:
            imported, first, warm = measure(path, target, args.runs)
            ok = first < TARGET_S
            missed += not ok
            print(f"| {path.name} | {target} | {imported:.3f} | {first:.3f} | {warm:.3f} | "
                  f"{'yes' if ok else 'NO'} |", flush=True)
    print(f"\n{len(files) * len(TARGETS) - missed} of {len(files) * len(TARGETS)} files "
          f"within {TARGET_S} s (first generation in a process)")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
