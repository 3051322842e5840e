"""Time the generated Triton kernels against flash-linear-attention's on one GPU.

    python benchmarks/bench_kernels.py                  # every op, B=8, H=16, K=V=128, bf16, T 4096
    python benchmarks/bench_kernels.py --lengths 4096 16384 --ops gated_delta_rule kda
    python benchmarks/bench_kernels.py --profile        # also a per-kernel profile of ours and fla
    TRITON_INTERPRET=1 python benchmarks/bench_kernels.py --device cpu   # a dry run on CPU

For each op (fla's chunk kernel for the family and the linarch spec with the same math) it first
checks that both agree on outputs and gradients, then times forward and forward+backward with
triton.testing.do_bench (medians). The table gives fla time / our time (above 1: ours is faster),
our TFLOP/s and GB/s and their fractions of the card's ceilings, measured here with a large
bf16 matmul and a large copy. With --profile, torch.profiler records a few steps of each and
writes a per-kernel table (ms and launches per step, memsets and copies included).

Every measurement is appended to OUT/kernels_bench.jsonl as it is made (OUT: --out, else $OUT,
else ./gpu_out), profiles go to OUT/profile_<op>.txt, and the configs every autotuner chose
(ours and fla's) to OUT/autotune_choices.json, so a run cut short still leaves its results.

FLOPs count the matmuls of the chunked algorithm (`chunk_flops`); forward+backward counts three
forwards, the usual convention. Bytes count the unavoidable HBM traffic (`io_bytes`): every input
read once and every output written once. Without a CUDA GPU the script says so and exits 0;
`--device cpu` under TRITON_INTERPRET=1 runs every step (agreement with fla, profile, timing
loop, result files) at a tiny shape in fp16 with fla's autotuners held to their first config,
to prove the wiring between GPU leases. Its timings mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from linarch.kernels.loader import load_kernels
from linarch.kernels.render import input_shapes
from linarch.kernels.spec import GateFn, KernelOptions, KernelSpec, RateFn, Transition

SHAPE = {"B": 8, "H": 16, "K": 128, "V": 128}
DRY_SHAPE = {"B": 1, "H": 2, "K": 32, "V": 32}
LENGTHS = (4096,)
DRY_LENGTHS = (100,)
CHUNK = 64
AGREEMENT = 5e-2  # max |ours - fla| / max |fla|, both in bf16
# gradients of per-head parameters are sums over all B*T tokens: reported, not held to AGREEMENT
REDUCED = ("dA_log", "ddt_bias")


@dataclass(frozen=True)
class Op:
    """One benchmarked recurrence: our spec and fla's chunk function over the same inputs."""

    name: str
    spec: KernelSpec
    fla_path: str  # module:function of fla's chunk op
    fla_keywords: tuple[str, ...] = ()  # inputs fla takes by keyword (the rest positionally)
    fla_flags: tuple[tuple[str, object], ...] = ()  # fla's options for the same math

    @property
    def inputs(self) -> tuple[str, ...]:
        """Our inputs after q, k, v, in signature order."""
        return tuple(input_shapes(self.spec))


OPS = (
    Op("delta_rule", KernelSpec("bench_delta_rule", Transition.DELTA),
       "fla.ops.delta_rule:chunk_delta_rule"),
    Op("gated_delta_rule", KernelSpec("bench_gated_delta_rule", Transition.GATED_DELTA),
       "fla.ops.gated_delta_rule:chunk_gated_delta_rule"),
    Op("gla", KernelSpec("bench_gla", Transition.DIAGONAL_DECAY), "fla.ops.gla:chunk_gla"),
    Op("simple_gla", KernelSpec("bench_simple_gla", Transition.SCALAR_DECAY),
       "fla.ops.simple_gla:chunk_simple_gla"),
    Op("kda", KernelSpec("bench_kda", Transition.CHANNEL_GATED_DELTA), "fla.ops.kda:chunk_kda"),
    Op("gated_deltaproduct", KernelSpec("bench_gated_deltaproduct", Transition.GATED_DELTA,
                                        micro_steps=2),
       "fla.ops.gated_delta_product:chunk_gated_delta_product",
       fla_flags=(("num_householder", 2),)),
    Op("comba", KernelSpec("bench_comba", Transition.IPLR), "fla.ops.comba:chunk_comba"),
    # RWKV-7 as its layer calls fla (chunk_rwkv7 -> chunk_dplr_delta_rule: a = -kk, b = kk a)
    Op("rwkv7", KernelSpec("bench_rwkv7", Transition.DPLR),
       "fla.ops.generalized_delta_rule:chunk_dplr_delta_rule"),
    # Gated DeltaNet as its layer calls it: L2 norm, Mamba gate and sigmoid rate in the kernels
    Op("gated_deltanet_layer",
       KernelSpec("bench_gated_deltanet", Transition.GATED_DELTA, l2norm_qk=True,
                  gate=GateFn.MAMBA, rate=RateFn.SIGMOID),
       "fla.ops.gated_delta_rule:chunk_gated_delta_rule", fla_keywords=("A_log", "dt_bias"),
       fla_flags=(("use_qk_l2norm_in_kernel", True), ("use_gate_in_kernel", True),
                  ("use_beta_sigmoid_in_kernel", True))),
)
DEFAULT_OPS = ("delta_rule", "gated_delta_rule", "gla", "kda", "gated_deltaproduct", "comba",
               "rwkv7")


def chunk_flops(spec: KernelSpec, B: int, T: int, H: int, K: int, V: int,
                chunk: int = CHUNK) -> float:
    """Matmul FLOPs of one forward of the chunked algorithm (2 m n k per product).

    Per chunk of C rows: the output Q h (2CKV), the scores Q K^T (2C^2K), scores times values
    (2C^2V) and the state update K^T V (2CKV); the UT/WY classes add R K^T (2C^2K), the
    triangular inverse (2C^3/3), W = T R (2C^2K), U = T V (2C^2V) and V_new = U - W h (2CKV).
    Rows are micro rows: micro_steps per token, two per token for dplr.
    """
    C = chunk
    per_chunk = 2 * C * K * V + 2 * C * C * K + 2 * C * C * V + 2 * C * K * V
    rows = T * (2 if spec.transition is Transition.DPLR else spec.micro_steps)
    if spec.transition.uses_wy:
        per_chunk += 2 * C * C * K + 2 * C ** 3 / 3 + 2 * C * C * K + 2 * C * C * V + 2 * C * K * V
    return float(B * H * -(-rows // C) * per_chunk)


def io_bytes(spec: KernelSpec, B: int, T: int, H: int, K: int, V: int, *,
             backward: bool, itemsize: int = 2) -> float:
    """Bytes every implementation must move: inputs read and outputs written once (forward), and
    for forward+backward also dO read and every input gradient written."""
    dims = {"B": B, "T": T, "H": H, "K": K}
    n = spec.micro_steps
    per_token = K + n * K + n * V  # q, k, v
    for shape in input_shapes(spec).values():
        dims_ = eval(shape, {}, dims)  # noqa: S307 - a tuple expression of render's
        if len(dims_) > 1:
            per_token += int(torch.tensor(dims_).prod()) // (B * T * H)
    inputs = B * T * H * per_token * itemsize
    forward = inputs + B * T * H * V * itemsize
    if not backward:
        return float(forward)
    return float(forward + B * T * H * V * itemsize + inputs)


@dataclass(frozen=True)
class Ceilings:
    """What this card measured: bf16 matmul TFLOP/s and device-to-device copy GB/s."""

    tflops: float
    gbps: float


@dataclass(frozen=True)
class Row:
    op: str
    T: int
    mode: str  # "fwd" or "fwd+bwd"
    ours_ms: float
    fla_ms: float
    flops: float
    bytes: float

    @property
    def ratio(self) -> float:
        return self.fla_ms / self.ours_ms

    def tflops(self) -> float:
        return self.flops / self.ours_ms / 1e9

    def gbps(self) -> float:
        return self.bytes / self.ours_ms / 1e6


def format_table(rows: list[Row], ceilings: Ceilings) -> str:
    """The results as a fixed-width text table."""
    header = (f"{'op':20s} {'T':>6s} {'mode':8s} {'ours ms':>9s} {'fla ms':>9s} {'fla/ours':>9s} "
              f"{'TFLOP/s':>8s} {'%peak':>6s} {'GB/s':>7s} {'%copy':>6s}")
    lines = [f"ceilings: bf16 matmul {ceilings.tflops:.0f} TFLOP/s, copy {ceilings.gbps:.0f} GB/s",
             header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.op:20s} {r.T:6d} {r.mode:8s} {r.ours_ms:9.3f} {r.fla_ms:9.3f} {r.ratio:9.2f} "
            f"{r.tflops():8.1f} {100 * r.tflops() / ceilings.tflops:5.1f}% "
            f"{r.gbps():7.0f} {100 * r.gbps() / ceilings.gbps:5.1f}%")
    return "\n".join(lines)


def measure_ceilings(device: torch.device) -> Ceilings:
    """Peak-ish bf16 matmul throughput and copy bandwidth of this card, by do_bench medians."""
    from triton.testing import do_bench

    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = do_bench(lambda: a @ b, warmup=50, rep=200, return_mode="median")
    tflops = 2 * n ** 3 / ms / 1e9
    x = torch.empty(1 << 28, device=device, dtype=torch.float32)  # 1 GiB
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=20, rep=200, return_mode="median")
    gbps = 2 * x.numel() * x.element_size() / ms / 1e6
    return Ceilings(tflops, gbps)


def make_inputs(op: Op, T: int, device: torch.device, seed: int = 0,
                dtype: torch.dtype = torch.bfloat16, shape: dict | None = None,
                ) -> dict[str, torch.Tensor]:
    """Inputs in the range the layers produce: unit-norm keys (and read keys) for the delta
    rules, log-decays in (-0.1, 0), rates in (0, 1), RWKV-7's a = -kk, b = kk a_gate; raw ones
    for the layer form (its kernels normalise and activate)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    shape = shape or SHAPE
    dims = {"B": shape["B"], "T": T, "H": shape["H"], "K": shape["K"]}
    B, H, K, V = shape["B"], shape["H"], shape["K"], shape["V"]
    spec = op.spec
    n = spec.micro_steps

    def rand(*size):
        return torch.rand(*size, device=device, generator=gen)

    def randn(*size):
        return torch.randn(*size, device=device, generator=gen)

    raw = spec.l2norm_qk  # the layer form takes raw q, k, gate and rate
    k = randn(B, n * T, H, K)
    if spec.transition.has_rate and not raw:
        k = F.normalize(k, dim=-1)
    out = {"q": randn(B, T, H, K), "k": k, "v": randn(B, n * T, H, V)}
    for name, expr in input_shapes(spec).items():
        size = eval(expr, {}, dims)  # noqa: S307 - a tuple expression of render's
        if name in ("A_log", "dt_bias"):
            continue
        if name == "g":
            out[name] = randn(*size) if raw else -0.1 * rand(*size)
        elif name == "beta":
            out[name] = randn(*size) if raw else rand(*size)
        elif name == "p":
            out[name] = F.normalize(randn(*size), dim=-1)
        elif name == "a":
            kk = F.normalize(randn(*size), dim=-1)
            out["a"], out["b"] = -kk, kk * rand(*size)
    out = {n_: t.to(dtype) for n_, t in out.items()}
    if "A_log" in op.inputs:  # fp32 per-head parameters, as in fla's GatedDeltaNet layer
        out["A_log"] = torch.log(1 + 15 * rand(H))
        out["dt_bias"] = 0.5 * randn(H)
    order = ["q", "k", "v", *op.inputs]
    return {n_: out[n_].requires_grad_() for n_ in order}


def _fla_fn(op: Op) -> Callable:
    import importlib

    module, _, name = op.fla_path.partition(":")
    return getattr(importlib.import_module(module), name)


def _calls(op: Op, inputs: dict[str, torch.Tensor],
           options: KernelOptions) -> tuple[Callable, Callable, object]:
    """(ours, fla, our module): each call maps nothing to the output o, over the same inputs."""
    module = load_kernels(op.spec, options)
    ours_fn = getattr(module, f"chunk_{op.spec.name}")
    fla_fn = _fla_fn(op)
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    extra = [inputs[n] for n in op.inputs]
    fla_args = [inputs[n] for n in op.inputs if n not in op.fla_keywords]
    fla_kwargs = {**{n: inputs[n] for n in op.fla_keywords}, **dict(op.fla_flags)}

    def ours():
        return ours_fn(q, k, v, *extra)[0]

    def fla():
        return fla_fn(q, k, v, *fla_args, **fla_kwargs)[0]

    return ours, fla, module


def _bind_fla(op: Op, inputs: dict[str, torch.Tensor]) -> None:
    """Raise TypeError unless fla's function takes the arguments the benchmark passes it."""
    import inspect

    args = [inputs[n] for n in ("q", "k", "v", *op.inputs) if n not in op.fla_keywords]
    kwargs = {**{n: inputs[n] for n in op.fla_keywords}, **dict(op.fla_flags)}
    inspect.signature(_fla_fn(op)).bind(*args, **kwargs)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


class FlaRefused(RuntimeError):
    """fla would not run this op here (fla 0.6.0 refuses its gated backward on Hopper under
    Triton 3.4 to 3.7.0, a compiler bug it guards against; under the interpreter its chunk
    kernels do not run at all); ours is then timed alone."""


# the exceptions that mean "fla refused"; the CPU dry run widens it to any (set in main)
FLA_REFUSALS: tuple[type[BaseException], ...] = (RuntimeError,)


def _guarded(who: str, run: Callable):
    try:
        return run()
    except FLA_REFUSALS as error:
        if who == "fla":
            raise FlaRefused(f"{type(error).__name__}: {str(error).splitlines()[0]}") from error
        raise


def check_agreement(inputs: dict[str, torch.Tensor], ours: Callable,
                    fla: Callable) -> dict[str, float]:
    """max |ours - fla| / max |fla| of o and of every input gradient."""
    leaves = list(inputs.values())
    do = torch.randn_like(ours())
    results = []
    for who, fn in (("ours", ours), ("fla", fla)):
        def forward_backward(fn=fn):
            o = fn()
            return [o.detach(), *torch.autograd.grad(o, leaves, do)]
        results.append(_guarded(who, forward_backward))
    names = ["o", *(f"d{n}" for n in inputs)]
    return {n: _rel(a, b) for n, a, b in zip(names, *results)}


def _timer(device: torch.device) -> Callable:
    """Median milliseconds of a step: do_bench on a GPU, a few wall-clock runs on CPU."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return lambda step, leaves: do_bench(step, warmup=10, rep=100, grad_to_none=leaves,
                                             return_mode="median")

    def wall(step, leaves):
        times = []
        for _ in range(2):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1e3)
        return sorted(times)[len(times) // 2]
    return wall


def _steps(fn: Callable, do: torch.Tensor) -> dict[str, Callable]:
    def forward():
        with torch.no_grad():
            fn()

    def forward_backward():
        fn().backward(do)
    return {"fwd": forward, "fwd+bwd": forward_backward}


def profile_op(op: Op, ours: Callable, fla: Callable, do: torch.Tensor, device: torch.device,
               steps: int = 3) -> str:
    """Per-kernel tables of `steps` forward+backward steps of ours and fla (device time and
    launches per step, every kernel, memsets and copies included)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda"
                                           else [])
    out = []
    for who, fn in (("ours", ours), ("fla", fla)):
        step = _steps(fn, do)["fwd+bwd"]
        try:
            _guarded(who, step)
        except FlaRefused as error:
            out.append(f"## {op.name} {who}: refused ({error})")
            continue
        with profile(activities=activities) as prof:
            for _ in range(steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
        rows = []
        for e in prof.key_averages():
            total = e.device_time_total if device.type == "cuda" else e.cpu_time_total
            if device.type == "cuda" and e.device_time_total <= 0:
                continue
            rows.append((total / steps / 1e3, e.count / steps, e.key))
        rows.sort(reverse=True)
        top = rows if device.type == "cuda" else rows[:25]
        total_ms = sum(r[0] for r in rows) if device.type == "cuda" else float("nan")
        out.append(f"## {op.name} {who}: forward+backward, per step "
                   f"({'device' if device.type == 'cuda' else 'CPU, top 25'} time; "
                   f"kernels total {total_ms:.3f} ms)")
        out.append(f"{'ms/step':>9s} {'launches':>8s}  kernel")
        out += [f"{ms:9.3f} {n:8.1f}  {name[:110]}" for ms, n, name in top]
        out.append("")
    return "\n".join(out)


def autotune_choices() -> dict[str, list[str]]:
    """The config every live Triton autotuner (ours and fla's) chose, per tuning key."""
    from triton.runtime.autotuner import Autotuner

    choices: dict[str, list[str]] = {}
    for obj in gc.get_objects():
        if isinstance(obj, Autotuner) and getattr(obj, "cache", None):
            fn = obj.fn
            while hasattr(fn, "fn"):
                fn = fn.fn
            name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')}"
            choices[name] = [f"{key}: {config}" for key, config in obj.cache.items()]
    return dict(sorted(choices.items()))


class Results:
    """The run's output folder: a JSON line per measurement, written as it is made."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.lines = folder / "kernels_bench.jsonl"

    def add(self, record: dict) -> None:
        with self.lines.open("a") as out:
            out.write(json.dumps(record) + "\n")

    def write(self, name: str, text: str) -> None:
        (self.folder / name).write_text(text)


def time_op(op: Op, T: int, device: torch.device, options: KernelOptions, shape: dict,
            dtype: torch.dtype, results: Results, check: bool, profile: bool
            ) -> tuple[list[Row], dict]:
    inputs = make_inputs(op, T, device, dtype=dtype, shape=shape)
    ours, fla, _ = _calls(op, inputs, options)
    _bind_fla(op, inputs)
    refused = None
    try:
        errors = check_agreement(inputs, ours, fla) if check else {}
    except FlaRefused as error:
        errors, refused = {}, error
    if errors:
        results.add({"op": op.name, "T": T, "agreement": errors})
    leaves = list(inputs.values())
    do = torch.randn_like(ours().detach())
    if profile:
        results.write(f"profile_{op.name}_T{T}.txt", profile_op(op, ours, fla, do, device))
    timer = _timer(device)
    B, H, K, V = shape["B"], shape["H"], shape["K"], shape["V"]
    rows = []
    for mode in ("fwd", "fwd+bwd"):
        times = {}
        for who, fn in (("ours", ours), ("fla", fla)):
            if who == "fla" and refused is not None:
                times[who] = float("nan")
                continue
            step = _steps(fn, do)[mode]
            try:
                _guarded(who, step)  # autotune and compile outside the timed region
            except FlaRefused as error:
                refused, times[who] = error, float("nan")
                continue
            times[who] = timer(step, leaves)
        flops = chunk_flops(op.spec, B, T, H, K, V) * (1 if mode == "fwd" else 3)
        bytes_ = io_bytes(op.spec, B, T, H, K, V, backward=mode != "fwd",
                          itemsize=torch.finfo(dtype).bits // 8)
        row = Row(op.name, T, mode, times["ours"], times["fla"], flops, bytes_)
        rows.append(row)
        results.add({**asdict(row), "ratio": row.ratio, "device": str(device)})
    if refused is not None:
        results.add({"op": op.name, "T": T, "fla_refused": str(refused)})
        print(f"{op.name} T={T}: fla refused, ours timed alone: {refused}", flush=True)
    return rows, errors


def _hold_autotuners_to_first_config() -> None:
    """Under the interpreter fla's autotuners would time their configs through a GPU driver;
    keep the first one (as tests/linarch_testing/oracles/interpret.py does)."""
    import triton.runtime.autotuner as autotuner

    prune = autotuner.Autotuner.prune_configs
    autotuner.Autotuner.prune_configs = lambda self, kwargs: prune(self, kwargs)[:1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T=4096 only (the default)")
    parser.add_argument("--lengths", nargs="*", type=int, default=None)
    parser.add_argument("--ops", nargs="*", default=list(DEFAULT_OPS),
                        choices=[op.name for op in OPS])
    parser.add_argument("--profile", action="store_true", help="per-kernel profiler tables")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--out", default=None, help="results folder ($OUT, else ./gpu_out)")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        if os.environ.get("TRITON_INTERPRET") != "1":
            parser.error("--device cpu needs TRITON_INTERPRET=1 (a dry run of the wiring)")
        _hold_autotuners_to_first_config()
        global FLA_REFUSALS
        FLA_REFUSALS = (Exception,)  # fla's chunk kernels do not run under the interpreter
        # fp16: the interpreter gets bf16 wrong and fla's delta rule refuses fp32
        device, dtype, shape = torch.device("cpu"), torch.float16, DRY_SHAPE
        lengths = args.lengths or DRY_LENGTHS
        options = KernelOptions(chunk_size=CHUNK, dtype="fp16", block_k=32, block_v=32)
        ceilings = Ceilings(float("nan"), float("nan"))
    else:
        if not torch.cuda.is_available():
            print("benchmarks/bench_kernels.py: no CUDA GPU here, nothing to time "
                  "(the generated kernels run on CPU only under TRITON_INTERPRET=1, far too "
                  "slowly to benchmark; --device cpu is a dry run). Run this on a machine with an "
                  "NVIDIA GPU.")
            return 0
        device, dtype, shape = torch.device("cuda"), torch.bfloat16, SHAPE
        lengths = args.lengths or LENGTHS
        options = KernelOptions(chunk_size=CHUNK, dtype="bf16")
    results = Results(Path(args.out or os.environ.get("OUT") or "gpu_out"))
    start = time.time()
    if device.type == "cuda":
        ceilings = measure_ceilings(device)
        gc.collect()
        torch.cuda.empty_cache()
        card = torch.cuda.get_device_name()
        print(f"{card}: {ceilings.tflops:.0f} TFLOP/s bf16 matmul, "
              f"{ceilings.gbps:.0f} GB/s copy ({time.time() - start:.0f} s)", flush=True)
    else:
        card = "CPU (Triton interpreter, dry run)"
    results.add({"device": card, "torch": torch.__version__, "shape": shape,
                 "ceilings": asdict(ceilings)})
    rows, failures = [], []
    for op in (op for op in OPS if op.name in args.ops):
        for i, T in enumerate(lengths):
            op_rows, errors = time_op(op, T, device, options, shape, dtype, results,
                                      check=i == 0, profile=args.profile and i == 0)
            gc.collect()  # free this size's tensors before the next
            if device.type == "cuda":
                torch.cuda.empty_cache()
            rows += op_rows
            if errors:
                worst = max(e for n, e in errors.items() if n not in REDUCED)
                status = "ok" if worst <= AGREEMENT else "MISMATCH"
                if status != "ok":
                    failures.append(op.name)
                print(f"{op.name}: agreement with fla at T={T}: {status} "
                      + ", ".join(f"{n} {e:.1e}" for n, e in errors.items()), flush=True)
            for r in op_rows:
                print(f"  {r.op} T={r.T} {r.mode}: ours {r.ours_ms:.3f} ms, fla {r.fla_ms:.3f} ms,"
                      f" fla/ours {r.ratio:.2f} ({time.time() - start:.0f} s)", flush=True)
            results.write("autotune_choices.json", json.dumps(autotune_choices(), indent=1))
    table = format_table(rows, ceilings)
    results.write("kernels_table.txt", f"{card}\n{table}\n")
    print()
    print(table)
    if failures:
        print(f"\noutputs differ from fla beyond {AGREEMENT:g} for: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
