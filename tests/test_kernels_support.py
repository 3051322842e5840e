"""Shared helpers of the kernel tests (no tests here): generate kernel modules, run them under
the Triton interpreter in a worker process, and compare forward and backward with fla's naive
references run here in float64.

The generated kernels run on CPU only under TRITON_INTERPRET=1, and that variable only works when
set before triton is first imported; other test modules import triton without it. So kernels run
in a fresh process (test_kernels_worker.py, which also blocks `linarch` and `fla` to prove the
generated files stand alone), one or two per test file, with autotune off and fp32 / fp16 (the
interpreter gets bf16 wrong). torch.empty* returns NaN-filled memory there, so an output element
a kernel forgets to write shows up as NaN.

On a machine with a GPU, `LINARCH_KERNEL_DEVICE=cuda` runs the same jobs compiled on the card
instead (no interpreter; inputs moved there, results moved back), against the same float64
references and tolerances: `benchmarks/gpu_check.sh` does this.

fla's references cast to float32 (`.float()`, `dtype=torch.float`); `float64_references()` runs
the same fla code with every float32 request turned into float64, so the oracle is exact to
~1e-12 and the tolerances measure the kernels alone.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from linarch.kernels.loader import write_kernels
from linarch.kernels.render import input_names
from linarch.kernels.spec import GateFn, KernelOptions, KernelSpec, RateFn, Transition

TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2}  # max |x - ref| / max |ref|
DTYPE_NAME = {torch.float32: "fp32", torch.float16: "fp16"}
WORKER = Path(__file__).with_name("test_kernels_worker.py")


def interpreter_options(dtype: torch.dtype, **options) -> KernelOptions:
    """One fixed config (the interpreter cannot autotune), small tiles to exercise the loops."""
    defaults = {"block_v": 16, "block_k": 16}
    return KernelOptions(autotune=False, dtype=DTYPE_NAME[dtype], **{**defaults, **options})


def run_jobs(jobs: list[dict], workers: int | None = None, timeout: float = 900.0) -> list[dict]:
    """Run kernel jobs (see test_kernels_worker) in TRITON_INTERPRET=1 processes, in order
    (compiled on the GPU instead when LINARCH_KERNEL_DEVICE=cuda)."""
    workers = workers or max(1, min(2, os.cpu_count() or 1, len(jobs)))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if env.get("LINARCH_KERNEL_DEVICE", "cpu") == "cpu":
        env["TRITON_INTERPRET"] = "1"
    else:
        env.pop("TRITON_INTERPRET", None)
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for w in range(workers):
            payload, result = Path(tmp, f"jobs{w}.pt"), Path(tmp, f"results{w}.pt")
            torch.save(jobs[w::workers], payload)
            procs.append((subprocess.Popen(
                [sys.executable, str(WORKER), str(payload), str(result)], env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), result))
        shards = []
        for proc, result in procs:
            _, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"kernel worker failed ({proc.returncode}):\n{err[-4000:]}")
            shards.append(torch.load(result, weights_only=False))
    out = [None] * len(jobs)
    for w, shard in enumerate(shards):
        out[w::workers] = shard
    return out


class _Float64(TorchFunctionMode):
    """Turns `.float()`, `.to(torch.float32)` and `dtype=torch.float32` into float64."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.float:
            return args[0].to(torch.float64)
        if kwargs.get("dtype") is torch.float32:
            kwargs["dtype"] = torch.float64
        if func is torch.Tensor.to:
            args = tuple(torch.float64 if a is torch.float32 else a for a in args)
        return func(*args, **kwargs)


@contextlib.contextmanager
def float64_references() -> Iterator[None]:
    """Context in which fla's float32-only naive references compute in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with _Float64():
            yield
    finally:
        torch.set_default_dtype(previous)


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """max |x - ref| / max |ref|, in float64 (inf when x has a NaN)."""
    x, ref = x.detach().double(), ref.detach().double()
    if not torch.isfinite(x).all():
        return float("inf")
    return ((x - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


# ---- references: fla's naive recurrences behind a prologue written in torch ---------------

def gate_values(spec: KernelSpec, raw: torch.Tensor, A_log=None, dt_bias=None) -> torch.Tensor:
    """The log-decay the spec's gate function makes of the raw gate input."""
    if spec.gate is GateFn.LOGSIGMOID_SCALED:
        return F.logsigmoid(raw) / spec.gate_normalizer
    if spec.gate is GateFn.MAMBA:
        return -A_log.exp() * F.softplus(raw + dt_bias)
    return raw


def rate_values(spec: KernelSpec, raw: torch.Tensor) -> torch.Tensor:
    if spec.rate is RateFn.SIGMOID:
        return raw.sigmoid()
    if spec.rate is RateFn.TWO_SIGMOID:
        return 2 * raw.sigmoid()
    return raw


def reference(spec: KernelSpec, q, k, v, extra: dict, h0, scale: float | None):
    """(o, final state) of the spec's recurrence via fla's naive reference for its class."""
    from fla.ops.comba.naive import naive_chunk_comba
    from fla.ops.delta_rule.naive import delta_rule_recurrence
    from fla.ops.gated_delta_product.naive import naive_recurrent_gated_delta_product
    from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule
    from fla.ops.generalized_delta_rule.dplr.naive import dplr_recurrence
    from fla.ops.gla.naive import naive_recurrent_gla
    from fla.ops.kda.naive import naive_recurrent_kda
    from fla.ops.linear_attn.naive import naive_recurrent_linear_attn
    from fla.ops.simple_gla.naive import naive_recurrent_simple_gla

    if spec.l2norm_qk:
        q, k = F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6)
    B, T, H, K = q.shape
    t = spec.transition
    if t is Transition.IDENTITY:
        return naive_recurrent_linear_attn(q, k, v, scale=scale, initial_state=h0,
                                           output_final_state=True)
    if spec.micro_steps > 1:
        # fla's Gated DeltaProduct reference: k, v, beta in '(t n)' order, the gate per token
        g = None if t is Transition.DELTA else gate_values(
            spec, extra["g"], extra.get("A_log"), extra.get("dt_bias"))
        return naive_recurrent_gated_delta_product(
            q, k, v, g, rate_values(spec, extra["beta"]), K ** -0.5 if scale is None else scale,
            initial_state=h0, output_final_state=True, num_householder=spec.micro_steps)
    if t is Transition.DELTA:
        # fla's delta_rule reference is head-first and hard-codes scale = K ** -0.5
        assert scale is None or scale == K ** -0.5
        beta = rate_values(spec, extra["beta"])
        o, state = delta_rule_recurrence(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), beta.transpose(1, 2),
            initial_state=h0, output_final_state=True)
        return o.transpose(1, 2), state
    if t is Transition.DIAGONAL_DECAY:
        assert scale is None or scale == K ** -0.5  # fla's GLA reference hard-codes the scale
        g = gate_values(spec, extra["g"])
        return naive_recurrent_gla(q, k, v, g, initial_state=h0, output_final_state=True)
    if t is Transition.CONSTANT_DECAY:
        g = extra["g_gamma"].view(1, 1, H).expand(B, T, H)
        return naive_recurrent_simple_gla(q, k, v, g, scale=scale, initial_state=h0,
                                          output_final_state=True)
    if t is Transition.CHANNEL_GATED_DELTA:
        return naive_recurrent_kda(q, k, v, gate_values(spec, extra["g"]),
                                   rate_values(spec, extra["beta"]), scale=scale,
                                   initial_state=h0, output_final_state=True)
    if t is Transition.DPLR:
        # head-first, scale K ** -0.5 hard-coded; alpha is the read vector, beta the write one
        assert scale is None or scale == K ** -0.5
        o, state = dplr_recurrence(*(x.transpose(1, 2) for x in (
            q, k, v, extra["a"], extra["b"], extra["g"])), initial_state=h0,
            output_final_state=True)
        return o.transpose(1, 2), state
    g = gate_values(spec, extra["g"], extra.get("A_log"), extra.get("dt_bias"))
    if t is Transition.SCALAR_DECAY:
        return naive_recurrent_simple_gla(q, k, v, g, scale=scale, initial_state=h0,
                                          output_final_state=True)
    beta = rate_values(spec, extra["beta"])
    if t is Transition.IPLR:
        # fla's naive_recurrent_comba decays the state before the read; its chunk kernels and
        # naive_chunk_comba read it before (tests/linarch_testing/oracles/comba.py)
        return naive_chunk_comba(q, k, v, extra["p"], g, beta, chunk_size=16, scale=scale,
                                 initial_state=h0, output_final_state=True)
    return naive_recurrent_gated_delta_rule(q, k, v, beta, g, scale=scale, initial_state=h0,
                                            output_final_state=True)


def token_rows(spec: KernelSpec, name: str) -> int:
    """Rows per token of an input: micro_steps for k, v and beta of a product, else 1."""
    return spec.micro_steps if name in ("k", "v", "beta") else 1


# ---- one forward + backward comparison ------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """A spec and the shapes, dtype and options of one kernel-vs-reference comparison."""

    spec: KernelSpec
    B: int = 2
    T: int = 100
    H: int = 2
    K: int = 32
    V: int = 32
    dtype: torch.dtype = torch.float32
    chunk_size: int = 64
    initial_state: bool = True
    varlen: tuple[int, ...] | None = None  # sequence lengths packed along T (then B = 1)
    seed: int = 0

    @property
    def id(self) -> str:
        text = (f"{self.spec.name}-B{self.B}T{self.T}H{self.H}K{self.K}V{self.V}-"
                f"{DTYPE_NAME[self.dtype]}-C{self.chunk_size}")
        if self.varlen:
            text += "-varlen" + "_".join(map(str, self.varlen))
        return text + ("" if self.initial_state else "-nostate")

    @property
    def N(self) -> int:
        return self.B if self.varlen is None else len(self.varlen)


def make_inputs(case: Case) -> dict[str, torch.Tensor]:
    """q, k, v, the spec's extra inputs in signature order, then h0 (if any)."""
    spec, gen = case.spec, torch.Generator().manual_seed(case.seed)
    B, T, H, K, V = case.B, case.T, case.H, case.K, case.V

    def randn(*shape, scale=1.0, dtype=case.dtype):
        return (torch.randn(*shape, generator=gen) * scale).to(dtype)

    def log_decay(*shape):  # in [-0.5, 0)
        return (-torch.rand(*shape, generator=gen) * 0.5).to(case.dtype)

    n = spec.micro_steps
    inputs = {"q": randn(B, T, H, K), "k": randn(B, n * T, H, K), "v": randn(B, n * T, H, V)}
    kind = spec.transition
    if kind is Transition.IPLR:  # Comba's read key: l2-normalised, like its layer's
        inputs["p"] = F.normalize(randn(B, T, H, K).float(), dim=-1).to(case.dtype)
    if kind is Transition.DPLR:  # RWKV-7's a = -kk and b = kk * a_gate, kk unit, a_gate in (0, 1)
        kk = F.normalize(torch.randn(B, T, H, K, generator=gen), dim=-1)
        inputs["a"] = (-kk).to(case.dtype)
        inputs["b"] = (kk * torch.rand(B, T, H, K, generator=gen)).to(case.dtype)
        inputs["k"] = randn(B, T, H, K, scale=0.5)
    if kind in (Transition.SCALAR_DECAY, Transition.GATED_DELTA, Transition.IPLR):
        inputs["g"] = log_decay(B, T, H) if spec.gate is GateFn.LOG else randn(B, T, H)
    elif kind.per_channel_gate:
        inputs["g"] = (log_decay(B, T, H, K) if spec.gate is GateFn.LOG
                       else randn(B, T, H, K, scale=2.0))
    elif kind is Transition.CONSTANT_DECAY:  # RetNet's decays, log(1 - 2^(-5-h))
        inputs["g_gamma"] = torch.log1p(-torch.pow(2.0, -5.0 - torch.arange(H).double())).float()
    if kind.has_rate:
        inputs["beta"] = (torch.rand(B, n * T, H, generator=gen).to(case.dtype)
                          if spec.rate is RateFn.RAW else randn(B, n * T, H))
        if not spec.l2norm_qk:  # the delta rule needs |k| ~ 1 to stay bounded
            inputs["k"] = F.normalize(inputs["k"].float(), dim=-1).to(case.dtype)
    if spec.gate is GateFn.MAMBA:
        inputs["A_log"] = randn(H, scale=0.5, dtype=torch.float32)
        inputs["dt_bias"] = randn(H, scale=0.5, dtype=torch.float32)
    if case.initial_state:
        inputs["h0"] = randn(case.N, H, K, V, scale=0.5, dtype=torch.float32)
    order = ["q", "k", "v", *input_names(spec), "h0"]
    return {name: inputs[name] for name in order if name in inputs}


def cu_seqlens_of(case: Case) -> torch.Tensor | None:
    if case.varlen is None:
        return None
    assert case.B == 1 and sum(case.varlen) == case.T
    return torch.tensor([0, *torch.tensor(case.varlen).cumsum(0).tolist()], dtype=torch.int32)


def loss_weights(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """Random cotangents of (o, final state): the loss is <o, do> + <state, dstate>."""
    gen = torch.Generator().manual_seed(case.seed + 1)
    do = torch.randn(case.B, case.T, case.H, case.V, generator=gen, dtype=torch.float64)
    dstate = torch.randn(case.N, case.H, case.K, case.V, generator=gen, dtype=torch.float64)
    return do, dstate


def kernel_job(case: Case, **options) -> dict:
    """A worker job: call chunk_<name> of the generated file, then the backward."""
    path = write_kernels(case.spec, interpreter_options(case.dtype, chunk_size=case.chunk_size,
                                                        **options))
    inputs = make_inputs(case)
    return {
        "module_path": str(path),
        "entry": f"chunk_{case.spec.name}",
        "args": [t for name, t in inputs.items() if name != "h0"],
        "initial_state": inputs.get("h0"),
        "cu_seqlens": cu_seqlens_of(case),
        "weights": loss_weights(case),
    }


def reference_outputs(case: Case) -> dict:
    """o, final state and the gradients of every floating input, in float64 through fla."""
    inputs = {n: t.detach().double().requires_grad_() for n, t in make_inputs(case).items()}
    extra = {n: t for n, t in inputs.items() if n not in ("q", "k", "v", "h0")}
    cu = cu_seqlens_of(case)
    with float64_references():
        if cu is None:
            o, state = reference(case.spec, inputs["q"], inputs["k"], inputs["v"], extra,
                                 inputs.get("h0"), None)
        else:
            o, state = _reference_varlen(case.spec, inputs, extra, cu)
        do, dstate = loss_weights(case)
        grads = torch.autograd.grad((o * do).sum() + (state * dstate).sum(), list(inputs.values()))
    return {"o": o, "state": state, "grads": dict(zip(inputs, grads))}


def _reference_varlen(spec, inputs, extra, cu):
    """Each packed sequence through the reference on its own; outputs re-packed."""
    outs, states = [], []
    bounds = cu.tolist()
    h0 = inputs.get("h0")

    def piece(name, t, start, end):
        n = token_rows(spec, name)
        return t[:, n * start:n * end] if t.dim() >= 3 else t

    for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
        o, s = reference(spec, *(piece(n, inputs[n], start, end) for n in ("q", "k", "v")),
                         {n: piece(n, t, start, end) for n, t in extra.items()},
                         None if h0 is None else h0[i:i + 1], None)
        outs.append(o)
        states.append(s)
    return torch.cat(outs, 1), torch.cat(states, 0)


@dataclass
class Comparison:
    """Relative errors of one kernel run against the float64 reference, output by output."""

    case: Case
    errors: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # the worker's exception, if the kernel failed

    @property
    def tolerance(self) -> float:
        return TOLERANCE[self.case.dtype]

    def failures(self) -> dict[str, float]:
        return {k: e for k, e in self.errors.items() if not e <= self.tolerance}

    def check(self) -> None:
        assert self.error is None, f"{self.case.id}: {self.error}"
        assert not self.failures(), (f"{self.case.id}: above {self.tolerance:g}: "
                                     f"{self.failures()} (all: {self.errors})")


def compare_cases(cases: list[Case]) -> dict[str, Comparison]:
    """Run every case's kernels in the interpreter worker and compare with the references."""
    results = run_jobs([kernel_job(case) for case in cases])
    out = {}
    for case, result in zip(cases, results):
        comparison = Comparison(case)
        if "error" in result:
            comparison.error = result["error"]
        else:
            ref = reference_outputs(case)
            comparison.errors["o"] = rel_err(result["o"], ref["o"])
            comparison.errors["final_state"] = rel_err(result["state"], ref["state"])
            names = [n for n in make_inputs(case) if n in ref["grads"]]
            for name, grad in zip(names, result["grads"]):
                comparison.errors[f"d{name}"] = rel_err(grad, ref["grads"][name])
        out[case.id] = comparison
    return out
