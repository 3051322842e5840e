"""Time the generated Triton kernels against flash-linear-attention's on one GPU.

    python benchmarks/bench_kernels.py            # B=8, H=16, K=V=128, bf16, T in (4096, 16384)
    python benchmarks/bench_kernels.py --quick    # T=4096 only
    python benchmarks/bench_kernels.py --ops gated_delta_rule simple_gla

For each op (fla's chunk_delta_rule, chunk_gated_delta_rule, chunk_gla, chunk_simple_gla and the
linarch spec with the same math) it first checks that both agree on outputs and gradients at the
first T, then times forward and forward+backward with triton.testing.do_bench (medians). The
table gives fla time / our time (above 1: ours is faster), our TFLOP/s and GB/s and their
fractions of the card's ceilings, measured here with a large bf16 matmul and a large copy.

FLOPs count the matmuls of the chunked algorithm (`chunk_flops`); forward+backward counts three
forwards, the usual convention. Bytes count the unavoidable HBM traffic (`io_bytes`): every input
read once and every output written once. Without a CUDA GPU the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from linarch.kernels.loader import load_kernels
from linarch.kernels.spec import GateFn, KernelOptions, KernelSpec, RateFn, Transition

SHAPE = {"B": 8, "H": 16, "K": 128, "V": 128}
LENGTHS = (4096, 16384)
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
    inputs: tuple[str, ...]  # extra inputs after q, k, v, in our signature order
    fla_keywords: tuple[str, ...] = ()  # inputs fla takes by keyword (the rest positionally)
    fla_flags: tuple[tuple[str, bool], ...] = ()  # fla's options for the same math


OPS = (
    Op("delta_rule", KernelSpec("bench_delta_rule", Transition.DELTA),
       "fla.ops.delta_rule:chunk_delta_rule", ("beta",)),
    Op("gated_delta_rule", KernelSpec("bench_gated_delta_rule", Transition.GATED_DELTA),
       "fla.ops.gated_delta_rule:chunk_gated_delta_rule", ("g", "beta")),
    Op("gla", KernelSpec("bench_gla", Transition.DIAGONAL_DECAY),
       "fla.ops.gla:chunk_gla", ("g",)),
    Op("simple_gla", KernelSpec("bench_simple_gla", Transition.SCALAR_DECAY),
       "fla.ops.simple_gla:chunk_simple_gla", ("g",)),
    # Gated DeltaNet as its layer calls it: L2 norm, Mamba gate and sigmoid rate in the kernels
    Op("gated_deltanet_layer",
       KernelSpec("bench_gated_deltanet", Transition.GATED_DELTA, l2norm_qk=True,
                  gate=GateFn.MAMBA, rate=RateFn.SIGMOID),
       "fla.ops.gated_delta_rule:chunk_gated_delta_rule", ("g", "beta", "A_log", "dt_bias"),
       fla_keywords=("A_log", "dt_bias"),
       fla_flags=(("use_qk_l2norm_in_kernel", True), ("use_gate_in_kernel", True),
                  ("use_beta_sigmoid_in_kernel", True))),
)
DEFAULT_OPS = ("delta_rule", "gated_delta_rule", "gla", "simple_gla")


def chunk_flops(transition: Transition, B: int, T: int, H: int, K: int, V: int,
                chunk: int = CHUNK) -> float:
    """Matmul FLOPs of one forward of the chunked algorithm (2 m n k per product).

    Per chunk of C rows: the output Q h (2CKV), the scores Q K^T (2C^2K), scores times values
    (2C^2V) and the state update K^T V (2CKV); the delta rule adds K K^T (2C^2K), the triangular
    inverse (2C^3/3), W = T K (2C^2K), U = T V (2C^2V) and V_new = U - W h (2CKV).
    """
    C = chunk
    per_chunk = 2 * C * K * V + 2 * C * C * K + 2 * C * C * V + 2 * C * K * V
    if transition.is_delta:
        per_chunk += 2 * C * C * K + 2 * C ** 3 / 3 + 2 * C * C * K + 2 * C * C * V + 2 * C * K * V
    return float(B * H * -(-T // C) * per_chunk)


def io_bytes(transition: Transition, B: int, T: int, H: int, K: int, V: int, *,
             backward: bool, itemsize: int = 2) -> float:
    """Bytes every implementation must move: inputs read and outputs written once (forward), and
    for forward+backward also dO read and every input gradient written."""
    tokens = B * T * H
    gate = {Transition.DIAGONAL_DECAY: K, Transition.SCALAR_DECAY: 1,
            Transition.GATED_DELTA: 1}.get(transition, 0)
    rate = 1 if transition.is_delta else 0
    inputs = tokens * (2 * K + V + gate + rate) * itemsize
    forward = inputs + tokens * V * itemsize
    if not backward:
        return float(forward)
    return float(forward + tokens * V * itemsize + inputs)


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
    header = (f"{'op':18s} {'T':>6s} {'mode':8s} {'ours ms':>9s} {'fla ms':>9s} {'fla/ours':>9s} "
              f"{'TFLOP/s':>8s} {'%peak':>6s} {'GB/s':>7s} {'%copy':>6s}")
    lines = [f"ceilings: bf16 matmul {ceilings.tflops:.0f} TFLOP/s, copy {ceilings.gbps:.0f} GB/s",
             header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.op:18s} {r.T:6d} {r.mode:8s} {r.ours_ms:9.3f} {r.fla_ms:9.3f} {r.ratio:9.2f} "
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
    """Inputs in the range the layers produce: unit-norm keys for the delta rule, log-decays in
    (-0.1, 0), rates in (0, 1); raw ones for the layer form."""
    gen = torch.Generator(device=device).manual_seed(seed)
    shape = shape or SHAPE
    B, H, K, V = shape["B"], shape["H"], shape["K"], shape["V"]

    def rand(*shape):
        return torch.rand(*shape, device=device, generator=gen)

    def randn(*shape):
        return torch.randn(*shape, device=device, generator=gen)

    raw = op.spec.l2norm_qk  # the layer form takes raw q, k, gate and rate
    k = randn(B, T, H, K)
    if op.spec.transition.is_delta and not raw:
        k = torch.nn.functional.normalize(k, dim=-1)
    out = {"q": randn(B, T, H, K), "k": k, "v": randn(B, T, H, V)}
    if "g" in op.inputs:
        gate = (B, T, H, K) if op.spec.transition is Transition.DIAGONAL_DECAY else (B, T, H)
        out["g"] = randn(*gate) if raw else -0.1 * rand(*gate)
    if "beta" in op.inputs:
        out["beta"] = randn(B, T, H) if raw else rand(B, T, H)
    out = {n: t.to(dtype) for n, t in out.items()}
    if "A_log" in op.inputs:  # fp32 per-head parameters, as in fla's GatedDeltaNet layer
        out["A_log"] = torch.log(1 + 15 * rand(H))
        out["dt_bias"] = 0.5 * randn(H)
    return {n: t.requires_grad_() for n, t in out.items()}


def _fla_fn(op: Op) -> Callable:
    import importlib

    module, _, name = op.fla_path.partition(":")
    return getattr(importlib.import_module(module), name)


def _calls(op: Op, inputs: dict[str, torch.Tensor],
           options: KernelOptions | None = None) -> tuple[Callable, Callable]:
    """(ours, fla): each maps nothing to the output o, over the same inputs."""
    options = options or KernelOptions(chunk_size=CHUNK, dtype="bf16")
    ours_fn = getattr(load_kernels(op.spec, options), f"chunk_{op.spec.name}")
    fla_fn = _fla_fn(op)
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    extra = [inputs[n] for n in op.inputs]
    fla_args = [inputs[n] for n in op.inputs if n not in op.fla_keywords]
    fla_kwargs = {**{n: inputs[n] for n in op.fla_keywords}, **dict(op.fla_flags)}

    def ours():
        return ours_fn(q, k, v, *extra)[0]

    def fla():
        return fla_fn(q, k, v, *fla_args, **fla_kwargs)[0]

    return ours, fla


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


class FlaRefused(RuntimeError):
    """fla would not run this op here (fla 0.6.0 refuses its gated backward on Hopper under
    Triton 3.4 to 3.7.0, a compiler bug it guards against); ours is then timed alone."""


def _guarded(who: str, run: Callable):
    try:
        return run()
    except RuntimeError as error:
        if who == "fla":
            raise FlaRefused(str(error).splitlines()[0]) from error
        raise


def check_agreement(op: Op, inputs: dict[str, torch.Tensor], ours: Callable,
                    fla: Callable) -> dict[str, float]:
    """max |ours - fla| / max |fla| of o and of every input gradient."""
    leaves = list(inputs.values())
    do = torch.randn_like(inputs["v"])
    results = []
    for who, fn in (("ours", ours), ("fla", fla)):
        def forward_backward(fn=fn):
            o = fn()
            return [o.detach(), *torch.autograd.grad(o, leaves, do)]
        results.append(_guarded(who, forward_backward))
    names = ["o", *(f"d{n}" for n in inputs)]
    return {n: _rel(a, b) for n, a, b in zip(names, *results)}


def time_op(op: Op, T: int, device: torch.device, check: bool) -> tuple[list[Row], dict]:
    from triton.testing import do_bench

    inputs = make_inputs(op, T, device)
    ours, fla = _calls(op, inputs)
    refused = None
    try:
        errors = check_agreement(op, inputs, ours, fla) if check else {}
    except FlaRefused as error:
        errors, refused = {}, error
    leaves = list(inputs.values())
    do = torch.randn_like(inputs["v"])
    B, H, K, V = SHAPE["B"], SHAPE["H"], SHAPE["K"], SHAPE["V"]
    rows = []
    for mode in ("fwd", "fwd+bwd"):
        times = {}
        for who, fn in (("ours", ours), ("fla", fla)):
            if who == "fla" and refused is not None:
                times[who] = float("nan")
                continue
            if mode == "fwd":
                def step(fn=fn):
                    with torch.no_grad():
                        fn()
            else:
                def step(fn=fn):
                    fn().backward(do)
            try:
                _guarded(who, step)  # autotune and compile outside the timed region
            except FlaRefused as error:
                refused, times[who] = error, float("nan")
                continue
            times[who] = do_bench(step, warmup=10, rep=100, grad_to_none=leaves,
                                  return_mode="median")
        flops = chunk_flops(op.spec.transition, B, T, H, K, V) * (1 if mode == "fwd" else 3)
        bytes_ = io_bytes(op.spec.transition, B, T, H, K, V, backward=mode != "fwd")
        rows.append(Row(op.name, T, mode, times["ours"], times["fla"], flops, bytes_))
    if refused is not None:
        print(f"{op.name} T={T}: fla refused, ours timed alone: {refused}", flush=True)
    return rows, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only T=4096")
    parser.add_argument("--ops", nargs="*", default=list(DEFAULT_OPS),
                        choices=[op.name for op in OPS])
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/bench_kernels.py: no CUDA GPU here, nothing to time "
              "(the generated kernels run on CPU only under TRITON_INTERPRET=1, far too slowly "
              "to benchmark). Run this on a machine with an NVIDIA GPU.")
        return 0
    device = torch.device("cuda")
    start = time.time()
    ceilings = measure_ceilings(device)
    gc.collect()
    torch.cuda.empty_cache()
    print(f"{torch.cuda.get_device_name()}: {ceilings.tflops:.0f} TFLOP/s bf16 matmul, "
          f"{ceilings.gbps:.0f} GB/s copy ({time.time() - start:.0f} s)", flush=True)
    lengths = LENGTHS[:1] if args.quick else LENGTHS
    rows, failures = [], []
    for op in (op for op in OPS if op.name in args.ops):
        for i, T in enumerate(lengths):
            op_rows, errors = time_op(op, T, device, check=i == 0)
            gc.collect()  # free this size's tensors before the next
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
    print()
    print(format_table(rows, ceilings))
    if failures:
        print(f"\noutputs differ from fla beyond {AGREEMENT:g} for: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
