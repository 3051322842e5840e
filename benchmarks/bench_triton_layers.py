"""Check the Triton target's layers against the PyTorch target on one GPU, then time both.

    python benchmarks/bench_triton_layers.py          # check, then time: B=8, T=4096, hidden 1024
    python benchmarks/bench_triton_layers.py --check  # the check only

The check: for every example (each runs fused kernels), the layer `linarch compile --target triton`
writes (kernels in fp32, autotuned) and the PyTorch target's layer hold the same weights and run
on the GPU in fp32 (TF32 off everywhere) over ragged lengths; outputs, input gradients and every
parameter gradient must agree to 1e-4 (max |triton - torch| / max |torch|), the tolerance the
CPU tests hold the interpreter to. The timing: both layers in bf16 (the triton file's default
bf16 kernels; the PyTorch target's chunked form), bf16 weights and inputs, forward+backward of
one training step, triton.testing.do_bench medians, ratio torch / triton (above 1: the fused
kernels are faster). Without a CUDA GPU the script says so and exits 0 (`--device cpu` under
TRITON_INTERPRET=1 runs the check alone, slowly, as a dry run of this script).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

import linarch

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LAYERS = {  # every example -> constructor keywords besides hidden_size and num_heads
    "comba": dict(expand_v=1),
    "content_sharp_router": dict(fir_long_kernel=7),
    "deltanet": {},
    "deltaproduct": dict(expand_v=1),
    "fusion_gated_fir": dict(fir_long_kernel=7),
    "gated_deltanet": dict(expand_v=1),
    "gla": {},
    "hgrn2": {},
    "kda": {},
    "linear_attention": {},
    "mamba2": dict(state_size=64),
    "retnet": {},
    "rwkv7": {},
    "simple_gla": {},
}
HEAD_DIM = ("comba", "deltaproduct", "gated_deltanet", "kda")  # head_dim = hidden / heads
CHECK_HIDDEN, CHECK_HEADS = 256, 2  # key dim 128: several key blocks in every kernel (BK <= 64)
CHECK_LENGTHS = (1, 37, 64, 200, 1000)
TOLERANCE = 1e-4
TIME_SHAPE = dict(B=8, T=4096, hidden=1024, heads=8)
DEVICE = "cuda"


@dataclass(frozen=True)
class Agreement:
    layer: str
    T: int
    worst: str  # name of the worst-agreeing tensor
    error: float

    @property
    def ok(self) -> bool:
        return self.error <= TOLERANCE


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _pair(name: str, hidden: int, heads: int, kernel_dtype: str, dtype: torch.dtype):
    kwargs = dict(hidden_size=hidden, num_heads=heads, **LAYERS[name])
    if name in HEAD_DIM:
        kwargs["head_dim"] = hidden // heads
    if name == "rwkv7":  # its heads follow from head_dim
        kwargs["head_dim"] = hidden // kwargs.pop("num_heads")
    path = str(EXAMPLES / f"{name}.lin")
    torch.manual_seed(0)
    fused = linarch.compile(path, target="triton", kernel_dtype=kernel_dtype)(**kwargs)
    plain = linarch.compile(path)(**kwargs)
    plain.load_state_dict(fused.state_dict(), strict=True)
    return fused.to(DEVICE, dtype), plain.to(DEVICE, dtype)


def check(name: str, lengths: tuple[int, ...] = CHECK_LENGTHS) -> list[Agreement]:
    fused, plain = _pair(name, CHECK_HIDDEN, CHECK_HEADS, "fp32", torch.float32)
    with torch.no_grad():  # off the initial values: zeros and ones would hide whole terms
        gen = torch.Generator(device=DEVICE).manual_seed(0)
        for p in fused.parameters():
            p.add_(0.1 * torch.randn(p.shape, device=DEVICE, generator=gen))
    plain.load_state_dict(fused.state_dict(), strict=True)
    out = []
    for T in lengths:
        gen = torch.Generator(device=DEVICE).manual_seed(T)
        x = torch.randn(2, T, CHECK_HIDDEN, device=DEVICE, generator=gen)
        grads = []
        for layer in (fused, plain):
            xi = x.clone().requires_grad_()
            o = layer(xi)[0]
            w = torch.randn(o.shape, device=DEVICE, generator=torch.Generator(
                device=DEVICE).manual_seed(1))
            params = [p for p in layer.parameters()]
            g = torch.autograd.grad((o * w).sum(), [xi, *params], allow_unused=True)
            grads.append([o.detach(), *g])
        names = ["o", "dx", *(f"d{n}" for n, _ in fused.named_parameters())]
        errors = {n: _rel(a, b) for n, a, b in zip(names, *grads)
                  if a is not None and b is not None}
        worst = max(errors, key=errors.get)
        out.append(Agreement(name, T, worst, errors[worst]))
    return out


def time_layer(name: str) -> tuple[float, float]:
    from triton.testing import do_bench

    B, T, hidden = TIME_SHAPE["B"], TIME_SHAPE["T"], TIME_SHAPE["hidden"]
    fused, plain = _pair(name, hidden, TIME_SHAPE["heads"], "bf16", torch.bfloat16)
    x = torch.randn(B, T, hidden, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    do = torch.randn_like(x)
    times = []
    for layer in (fused, plain):
        def step(layer=layer):
            layer(x)[0].backward(do)
        step()  # autotune and compile outside the timed region
        times.append(do_bench(step, warmup=5, rep=50, grad_to_none=[x, *layer.parameters()],
                              return_mode="median"))
    return times[0], times[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="agreement only, no timing")
    parser.add_argument("--layers", nargs="*", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--lengths", nargs="*", type=int, default=list(CHECK_LENGTHS))
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cpu":
        import os

        if os.environ.get("TRITON_INTERPRET") != "1":
            parser.error("--device cpu needs TRITON_INTERPRET=1 (and checks only)")
        args.check = True
    elif not torch.cuda.is_available():
        print("benchmarks/bench_triton_layers.py: no CUDA GPU here, nothing to check or time.")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    card = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU (Triton interpreter)"
    print(f"{card}, torch {torch.__version__}", flush=True)
    failures = []
    for name in args.layers:
        for a in check(name, tuple(args.lengths)):
            status = "ok" if a.ok else "MISMATCH"
            if not a.ok:
                failures.append(f"{name} T={a.T}")
            print(f"check {name:15s} T={a.T:5d}: {status} (worst {a.worst} {a.error:.1e})",
                  flush=True)
    if not args.check:
        print(f"\nlayer fwd+bwd, bf16, B={TIME_SHAPE['B']} T={TIME_SHAPE['T']} "
              f"hidden={TIME_SHAPE['hidden']}")
        print(f"{'layer':16s} {'triton ms':>10s} {'torch ms':>10s} {'torch/triton':>13s}")
        for name in args.layers:
            ours, ref = time_layer(name)
            print(f"{name:16s} {ours:10.3f} {ref:10.3f} {ref / ours:13.2f}", flush=True)
    if failures:
        print(f"\ntriton and torch targets differ beyond {TOLERANCE:g}: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
