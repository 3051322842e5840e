"""Where a proxy training step's CPU time goes, what torch.compile buys, and what the two
remaining MQAR targets would cost on this machine.

    python benchmarks/bench_proxy_step.py                       # DeltaNet and softmax attention
    python benchmarks/bench_proxy_step.py --mixers examples/gated_deltanet.lin --no-compile

For each mixer, the model, data and optimiser are the proxy's own (`budget_for(MQAR, PROXY)`,
the mixer at its declared widths, seed 0's training batches), and the step is the trainer's:
forward, loss, backward, gradient clipping, AdamW. Timed on one thread, in CPU time of this
thread (time.thread_time), medians over alternating repeats, so that eager and compiled run
under the same conditions in the same process:

1. eager: the step as `linarch train` runs it.
2. compiled: the same step with the loss under `torch.compile` (inductor's C++ backend), its
   first call (the compile) timed apart, its distinct graph-break reasons counted. The layers
   themselves trace whole (tests/test_torch_compile.py); the one break expected is the loss's,
   which indexes the labelled positions with a boolean mask (a data-dependent shape) so that
   the vocabulary head runs only where MQAR has a label.
3. kernels: the milliseconds of a step spent inside the library's compute kernels (torch
   profiler, self CPU time per step): the matrix products (mm, bmm, addmm) apart from the
   rest (the triangular solve, convolutions, log-softmax). Everything else in a step is
   elementwise and bookkeeping work that fusion could remove; the matrix products, at the
   library's speed for these shapes, are a floor no rewrite of the generated code goes under.

Then the arithmetic of the targets: seeds needed for an interval half-width of `--width` at
the paired SD `--sd` (default: what the calibration's A/A median half-width of 0.069 at 8
seeds implies), at the level `linarch train --precision` uses, plus the rate choice's second
run; their CPU seconds (steps x step time, a lower bound: it leaves out evaluation and
start-up) at the eager step, the compiled step and the matrix-product floor; and the wall time
of each on `--cores` cores against the 5-minute target.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from linarch.evaluation.compare import _rule
from linarch.evaluation.mixers import mixer_from_dsl
from linarch.evaluation.presets import Preset, TaskKind, budget_for
from linarch.evaluation.seeds import SeedSchedule, seeds_needed
from linarch.evaluation.stats import t_quantile
from linarch.evaluation.trainer import optimizer_for, seed_everything

ROOT = Path(__file__).resolve().parent.parent
MATMULS = ("aten::mm", "aten::bmm", "aten::addmm")
OTHER_KERNELS = ("aten::linalg_solve_triangular", "aten::mkldnn_convolution",
                 "aten::convolution_backward", "aten::_log_softmax",
                 "aten::_log_softmax_backward_data", "aten::_softmax",
                 "aten::_softmax_backward_data")


def proxy_step(path: Path, compiled: bool) -> Callable[[], None]:
    """One training step of the proxy's model for this mixer, as the trainer takes it."""
    budget = budget_for(TaskKind.MQAR, Preset.PROXY)
    problem, config = budget.problems[0]
    seed_everything(0)
    model = problem.build_model(mixer_from_dsl(path), problem.shape)
    optimizer = optimizer_for(model, config)
    generator = torch.Generator().manual_seed(0)
    batch = next(problem.batches(problem.make_data(0), config.batch_size, generator))

    def loss_of(batch):
        return problem.loss(model, batch)

    loss_fn = torch.compile(loss_of) if compiled else loss_of

    def step() -> None:
        loss, aux = loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()

    return step


def thread_ms(step: Callable[[], None], steps: int) -> float:
    started = time.thread_time()
    for _ in range(steps):
        step()
    return 1000 * (time.thread_time() - started) / steps


def kernel_ms(step: Callable[[], None], steps: int) -> tuple[float, float]:
    """Milliseconds a step inside the matrix products, and inside the other library kernels."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    self_ms = {e.key: e.self_cpu_time_total / 1000 / steps for e in prof.key_averages()}
    return (sum(self_ms.get(k, 0.0) for k in MATMULS),
            sum(self_ms.get(k, 0.0) for k in OTHER_KERNELS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mixers", nargs="+", type=Path,
                        default=[ROOT / "examples" / "deltanet.lin",
                                 ROOT / "examples" / "reference" / "softmax_attention.lin"])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--width", type=float, default=0.03, help="the targeted half-width")
    parser.add_argument("--sd", type=float, default=None,
                        help="paired SD (default: from the calibration's A/A, 0.069 at 8 seeds)")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    budget = budget_for(TaskKind.MQAR, Preset.PROXY)
    steps_per_run = budget.problems[0][1].steps
    per_look = budget.rule.confidence  # the level of the calibration's A/A intervals
    precision_level = _rule(budget, SeedSchedule.until_precision(args.width)).confidence
    cap = budget.schedule.cap
    sd = args.sd if args.sd is not None else (
        0.069 * math.sqrt(cap) / t_quantile(0.5 + per_look / 2, cap - 1))

    n = seeds_needed(args.width, sd, precision_level)
    print(f"half-width {args.width} at paired SD {sd:.3f} ({100 * precision_level:.3g}%) needs "
          f"{n} seeds: {n + 1} runs of {steps_per_run} steps with the rate choice's second run")

    def cost(ms: float) -> str:
        cpu = (n + 1) * steps_per_run * ms / 1000
        return (f"{cpu:.0f} CPU-s, {cpu / args.cores / 60:.1f} min on {args.cores} cores "
                f"({cpu / args.cores / 300:.1f}x the 5-minute target)")

    for path in args.mixers:
        eager = proxy_step(path, compiled=False)
        eager()  # warm up
        matmul, other = kernel_ms(eager, args.steps)
        if args.no_compile:
            ms = statistics.median(thread_ms(eager, args.steps) for _ in range(args.repeats))
            compiled_line = ""
        else:
            compiled = proxy_step(path, compiled=True)
            torch._dynamo.utils.counters.clear()
            started = time.perf_counter()
            compiled()
            compile_s = time.perf_counter() - started
            breaks = len(torch._dynamo.utils.counters["graph_break"])  # distinct reasons
            compiled()
            pairs = [(thread_ms(eager, args.steps), thread_ms(compiled, args.steps))
                     for _ in range(args.repeats)]
            ms = statistics.median(p[0] for p in pairs)
            ms_c = statistics.median(p[1] for p in pairs)
            compiled_line = (f"  compiled: {ms_c:.1f} ms a step, {ms_c / ms:.2f}x eager (first "
                             f"call {compile_s:.0f} s wall, {breaks} distinct graph-break "
                             f"reasons): {cost(ms_c)}\n")
        print(f"{path.stem}\n  eager: {ms:.1f} ms a step: {cost(ms)}\n{compiled_line}"
              f"  kernels: matrix products {matmul:.1f} ms a step ({matmul / ms:.0%} of eager), "
              f"other library kernels {other:.1f} ms ({other / ms:.0%}); the matrix products "
              f"alone: {cost(matmul)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
