"""CPU cost of the compiled PyTorch layers against references run in the same process, one thread.

    python benchmarks/bench_torch_cpu.py                 # the issue's sizes (a few minutes)
    python benchmarks/bench_torch_cpu.py --quick         # small sizes, a smoke run of every measure

What is timed (B=4, T=1024, H=4, D=64; DeltaNet hidden 256 = H*D, Gated DeltaNet hidden 256,
head_dim 64, expand_v 1 so that dk = dv = 64 in both):

1. Training step, forward + backward (loss = sum of squares of the output), of the compiled
   layer (examples/deltanet.lin, examples/gated_deltanet.lin, mode="chunk") against a reference
   layer that is the *same* layer object with only its core swapped: the reference calls the
   compiled layer's own projections, short convolutions, norms and gates, then the hand-written
   chunked delta rule of benchmarks/bench_chunked_reference.py (UT transform with
   torch.linalg.solve_triangular) instead of the generated chunk path. The two outputs are
   checked equal first. A second line times the cores alone on identical inputs (q, k, v, beta,
   g -> o, final state): the generated core (operand set-up + chunk_dplr) against the reference.
2. The compiled layer's training step in mode="chunk" against mode="recurrent" (the token-by-token
   form generated from the update as written) at T=1024.
3. Decode latency per token (no grad, one token a call with a cache) after a prompt of 16 tokens
   against after a prompt of 4096 tokens.
4. Peak memory of one training step at T=8192, compiled against the reference layer: the largest
   sum of live CPU tensor bytes allocated during the step (torch profiler memory events).

Times are CPU time of the benchmark's thread (time.thread_time), medians over alternating
repeats: on a shared machine wall time measures the neighbours, thread time measures the work.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import linarch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_chunked_reference import chunk_delta_rule, chunk_gated_delta_rule  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    batch: int = 4
    length: int = 1024
    heads: int = 4
    head_dim: int = 64
    decode_short: int = 16
    decode_long: int = 4096
    memory_length: int = 8192
    repeats: int = 7
    recurrent_repeats: int = 2
    decode_tokens: int = 32


QUICK = Sizes(batch=2, length=256, heads=2, head_dim=32, decode_short=16, decode_long=512,
              memory_length=1024, repeats=3, recurrent_repeats=1, decode_tokens=8)


@dataclass(frozen=True)
class Row:
    """One measured ratio and the target it is held to (ratio <= limit)."""

    measure: str
    ours: float
    reference: float
    unit: str
    limit: float
    note: str

    @property
    def ratio(self) -> float:
        return self.ours / self.reference

    @property
    def ok(self) -> bool:
        return self.ratio <= self.limit


# ------------------------------------------------------------------------------------ layers
@dataclass(frozen=True)
class Family:
    name: str
    path: Path
    kwargs: Callable[[Sizes], dict]
    reference: Callable  # (layer, x) -> output, with the hand-written core
    core: Callable  # (inputs, compiled?) -> (o, state)


def _runtime(layer):
    """The generated module of a compiled layer: its runtime helpers (causal_conv, l2norm...)."""
    return sys.modules[type(layer).__module__]


def _qkv_beta(layer, x):
    """The compiled layer's own pre-core computation, step by step as the .lin program says."""
    rt = _runtime(layer)
    heads, dk, dv = int(layer.H), int(layer.dk), int(layer.dv)

    def conv(proj, conv_mod):
        return F.silu(rt.causal_conv(proj(x), conv_mod.weight, conv_mod.bias)[0])

    q = rt.l2norm(conv(layer.q_proj, layer.q_conv1d).unflatten(-1, (heads, dk)))
    k = rt.l2norm(conv(layer.k_proj, layer.k_conv1d).unflatten(-1, (heads, dk)))
    v = conv(layer.v_proj, layer.v_conv1d).unflatten(-1, (heads, dv))
    return q, k, v, torch.sigmoid(layer.b_proj(x))


def deltanet_reference(layer, x):
    q, k, v, beta = _qkv_beta(layer, x)
    o, _ = chunk_delta_rule(q, k, v, beta, scale=int(layer.dk) ** -0.5)
    return layer.o_proj(layer.o_norm(o).flatten(-2))


def gated_deltanet_reference(layer, x):
    q, k, v, beta = _qkv_beta(layer, x)
    g = -layer.A_log.exp() * F.softplus(layer.a_proj(x) + layer.dt_bias)
    o, _ = chunk_gated_delta_rule(q, k, v, g, beta, scale=int(layer.dk) ** -0.5)
    gate = F.silu(layer.g_proj(x).unflatten(-1, (int(layer.H), int(layer.dv))))
    return layer.o_proj((layer.o_norm(o) * gate).flatten(-2))


def _core(gated: bool):
    """Core alone: the generated operand set-up + chunk_dplr, or the hand-written function."""

    def run(inputs, layer, compiled: bool):
        q, k, v, beta, g = inputs
        scale = q.shape[-1] ** -0.5
        if not compiled:
            if gated:
                return chunk_gated_delta_rule(q, k, v, g, beta, scale=scale)
            return chunk_delta_rule(q, k, v, beta, scale=scale)
        rt = _runtime(layer)
        b = beta[..., None]
        a = -b * g.exp()[..., None] * k if gated else -b * k  # as the generated code builds it
        o, state = rt.chunk_dplr(q, k, b * v, g=g if gated else None, a=a, c=k)
        return o * scale, state

    return run


FAMILIES = (
    Family("DeltaNet", ROOT / "examples" / "deltanet.lin",
           lambda s: dict(hidden_size=s.heads * s.head_dim, num_heads=s.heads),
           deltanet_reference, _core(False)),
    Family("GatedDeltaNet", ROOT / "examples" / "gated_deltanet.lin",
           lambda s: dict(hidden_size=s.heads * s.head_dim, num_heads=s.heads,
                          head_dim=s.head_dim, expand_v=1),
           gated_deltanet_reference, _core(True)),
)


def build(family: Family, sizes: Sizes):
    torch.manual_seed(0)
    layer = linarch.compile(family.path)(layer_idx=0, **family.kwargs(sizes))
    with torch.no_grad():  # off the zero / identity inits, like a trained layer
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return layer


# ------------------------------------------------------------------------------------ timing
def _thread_seconds(fn: Callable[[], object]) -> float:
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def compare(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median thread-CPU seconds of each run, alternating runs so drift hits all alike."""
    for run in runs.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(_thread_seconds(run))
    return {name: statistics.median(ts) for name, ts in times.items()}


def train_step(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    def step():
        out = forward(x)
        out.square().sum().backward()

    return step


def layer_forward(layer, mode: str):
    def forward(x):
        layer.mode = mode
        return layer(x)[0]

    return forward


def peak_bytes(fn: Callable[[], object]) -> int:
    """Largest total of CPU bytes allocated and not yet freed while `fn` runs."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def decode_seconds_per_token(layer, prompt: int, tokens: int, batch: int) -> float:
    from linarch.models.cache import LinarchCache

    hidden = layer.hidden_size
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, prompt + tokens, hidden, generator=gen)
    layer.mode = "chunk"
    with torch.no_grad():
        cache = LinarchCache(num_layers=1)
        layer(x[:, :prompt], past_key_values=cache, use_cache=True)
        for t in range(prompt, prompt + 2):  # warm-up
            layer(x[:, t:t + 1], past_key_values=cache, use_cache=True)
        start = time.thread_time()
        for t in range(prompt + 2, prompt + tokens):
            layer(x[:, t:t + 1], past_key_values=cache, use_cache=True)
        return (time.thread_time() - start) / (tokens - 2)


# ------------------------------------------------------------------------------------ measures
def measure_family(family: Family, sizes: Sizes) -> list[Row]:
    layer = build(family, sizes)
    hidden = layer.hidden_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(sizes.batch, sizes.length, hidden, generator=gen, requires_grad=True)
    shape = f"B={sizes.batch} T={sizes.length} H={sizes.heads} D={sizes.head_dim}"
    rows = []

    with torch.no_grad():  # the swapped-core reference computes the same function
        ours, ref = layer_forward(layer, "chunk")(x), family.reference(layer, x)
        error = ((ours - ref).abs().max() / ref.abs().max()).item()
    assert error < 1e-4, f"{family.name}: reference layer differs from the compiled one ({error})"

    times = compare({"ours": train_step(layer_forward(layer, "chunk"), x),
                     "ref": train_step(lambda inp: family.reference(layer, inp), x)},
                    sizes.repeats)
    rows.append(Row(f"{family.name} layer fwd+bwd", times["ours"], times["ref"], "s", 1.1,
                    f"{shape}; same layer, core swapped for bench_chunked_reference"))

    heads, dim = sizes.heads, sizes.head_dim
    q = torch.randn(sizes.batch, sizes.length, heads, dim, generator=gen)
    k = F.normalize(torch.randn(sizes.batch, sizes.length, heads, dim, generator=gen), dim=-1)
    v = torch.randn(sizes.batch, sizes.length, heads, dim, generator=gen)
    beta = torch.rand(sizes.batch, sizes.length, heads, generator=gen)
    g = F.logsigmoid(torch.randn(sizes.batch, sizes.length, heads, generator=gen))
    inputs = [t.requires_grad_() for t in (q, k, v, beta, g)]

    def core_step(compiled: bool):
        def step():
            o, state = family.core(inputs, layer, compiled)
            (o.square().sum() + state.square().sum()).backward()

        return step

    times = compare({"ours": core_step(True), "ref": core_step(False)}, sizes.repeats)
    rows.append(Row(f"{family.name} core fwd+bwd", times["ours"], times["ref"], "s", 1.1,
                    f"{shape}; chunk_dplr (+ operand set-up) vs bench_chunked_reference"))

    times = compare({"ours": train_step(layer_forward(layer, "chunk"), x),
                     "ref": train_step(layer_forward(layer, "recurrent"), x)},
                    sizes.recurrent_repeats)
    rows.append(Row(f"{family.name} chunk / recurrent", times["ours"], times["ref"], "s", 0.1,
                    f"{shape}; layer fwd+bwd, mode='chunk' vs mode='recurrent'"))

    short = decode_seconds_per_token(layer, sizes.decode_short, sizes.decode_tokens, sizes.batch)
    long = decode_seconds_per_token(layer, sizes.decode_long, sizes.decode_tokens, sizes.batch)
    rows.append(Row(f"{family.name} decode / token", long, short, "s", 1.2,
                    f"B={sizes.batch}; after {sizes.decode_long} tokens vs after "
                    f"{sizes.decode_short}"))

    xm = torch.randn(sizes.batch, sizes.memory_length, hidden, generator=gen, requires_grad=True)
    ours_peak = peak_bytes(train_step(layer_forward(layer, "chunk"), xm))
    layer.zero_grad(set_to_none=True)
    ref_peak = peak_bytes(train_step(lambda inp: family.reference(layer, inp), xm))
    rows.append(Row(f"{family.name} peak memory", ours_peak, ref_peak, "B", 1.5,
                    f"B={sizes.batch} T={sizes.memory_length}; layer fwd+bwd"))
    return rows


def _fmt(value: float, unit: str) -> str:
    if unit == "B":
        return f"{value / 2**20:9.1f} MiB"
    return f"{value * 1e3:9.2f} ms"


def print_table(rows: list[Row]) -> None:
    print(f"{'measure':34s} {'compiled':>13s} {'reference':>13s} {'ratio':>7s} {'target':>8s}"
          "  ok   what")
    for r in rows:
        print(f"{r.measure:34s} {_fmt(r.ours, r.unit):>13s} {_fmt(r.reference, r.unit):>13s} "
              f"{r.ratio:7.3f} {'<= ' + format(r.limit, 'g'):>8s}  {'yes' if r.ok else 'NO ':3s}"
              f"  {r.note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--repeats", type=int, help="timed repeats per measure")
    parser.add_argument("--family", choices=[f.name for f in FAMILIES], action="append")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sizes = QUICK if args.quick else Sizes()
    if args.repeats:
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread; times: median thread "
          f"CPU time over {sizes.repeats} alternating repeats (chunk/recurrent: "
          f"{sizes.recurrent_repeats})")
    rows = []
    for family in FAMILIES:
        if args.family and family.name not in args.family:
            continue
        rows.extend(measure_family(family, sizes))
    print_table(rows)
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
