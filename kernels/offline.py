"""Compile generated kernels for an NVIDIA GPU without one, and report what each costs.

Triton compiles to a cubin for any target without a driver, and its wheel ships cuobjdump. So on
a CPU machine we can still check that every kernel of a generated module compiles for, say,
sm_90, and read its register count, stack (local memory) size and the number of spill
instructions (LDL/STL) in the SASS: the first thing that makes a Triton kernel slow.

The launch arguments come from the module's own launchers: `*_fwd` and `*_bwd` run on meta
tensors with every kernel replaced by a recorder, so the compiled signatures are exactly the
launched ones. Autotuned kernels are compiled once per config.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import types
from dataclasses import dataclass

import torch

from .loader import load_kernels
from .render import input_names
from .spec import KernelOptions, KernelSpec, Transition

_TORCH_TO_TRITON = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32",
                    torch.int32: "i32", torch.int64: "i64"}


@dataclass(frozen=True)
class KernelReport:
    """One compiled kernel: where it came from and what it uses."""

    kernel: str
    config: str  # the tuned constexprs, num_warps, num_stages
    registers: int
    stack: int  # bytes of local memory per thread
    spills: int  # LDL + STL instructions in the SASS
    mmas: int  # HGMMA / HMMA instructions in the SASS
    shared: int  # bytes of shared memory

    def line(self) -> str:
        return (f"{self.kernel:44s} {self.config:44s} regs {self.registers:3d}  "
                f"stack {self.stack:5d}  spills {self.spills:5d}  mma {self.mmas:4d}  "
                f"smem {self.shared:6d}")


@dataclass
class _Launch:
    kernel: object
    kwargs: dict


class _Recorder:
    """Stands in for a kernel: `kernel[grid](**kwargs)` records the call."""

    def __init__(self, kernel: object, launches: list[_Launch]):
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, grid):
        def launch(**kwargs):
            self.launches.append(_Launch(self.kernel, kwargs))
        return launch


def _example_inputs(spec: KernelSpec, module: types.ModuleType, B: int, T: int, H: int, K: int,
                    V: int) -> tuple[list, dict]:
    dtype = module.DTYPE
    meta = torch.device("meta")

    def t(*shape, dt=dtype):
        return torch.empty(*shape, dtype=dt, device=meta)

    args = [t(B, T, H, K), t(B, T, H, K), t(B, T, H, V)]
    for name in input_names(spec):
        shape = {"g": (B, T, H, K) if spec.transition is Transition.DIAGONAL_DECAY else (B, T, H),
                 "beta": (B, T, H), "g_gamma": (H,), "A_log": (H,), "dt_bias": (H,)}[name]
        args.append(t(*shape, dt=torch.float32 if len(shape) == 1 else dtype))
    return args, {"h0": t(B, H, K, V, dt=torch.float32), "do": t(B, T, H, V),
                  "dht": t(B, H, K, V, dt=torch.float32)}


def record_launches(spec: KernelSpec, options: KernelOptions, *, B=8, T=4096, H=16, K=128,
                    V=128, module: types.ModuleType | None = None) -> list[_Launch]:
    """Every kernel launch of one forward and one backward, with its keyword arguments."""
    module = module or load_kernels(spec, options)
    launches: list[_Launch] = []
    kernels = {n: getattr(module, n) for n in dir(module) if n.endswith("_kernel")}
    recorders = {n: _Recorder(k, launches) for n, k in kernels.items()}
    fwd, bwd = getattr(module, f"{spec.name}_fwd"), getattr(module, f"{spec.name}_bwd")
    args, extra = _example_inputs(spec, module, B, T, H, K, V)
    saved = dict(kernels)
    try:
        for name, recorder in recorders.items():
            setattr(module, name, recorder)
        common = dict(scale=K ** -0.5, initial_state=extra["h0"], cu_seqlens=None,
                      chunk_indices=None, chunk_offsets=None)
        fwd(*args, output_final_state=True, **common)
        bwd(*args, do=extra["do"], dht=extra["dht"], **common)
    finally:
        for name, kernel in saved.items():
            setattr(module, name, kernel)
    return launches


def _jit_function(kernel):
    from triton.runtime.jit import JITFunction

    while not isinstance(kernel, JITFunction):
        kernel = kernel.fn
    return kernel


def _signature(fn, kwargs: dict) -> tuple[dict, dict]:
    signature, constants = {}, {}
    for param in fn.params:
        value = kwargs[param.name]
        if param.is_constexpr or value is None:
            signature[param.name] = "constexpr"
            constants[param.name] = value
        elif isinstance(value, torch.Tensor):
            signature[param.name] = "*" + _TORCH_TO_TRITON[value.dtype]
        elif isinstance(value, bool):
            signature[param.name] = "i1"
        elif isinstance(value, int):
            signature[param.name] = "i32"
        else:
            signature[param.name] = "fp32"
    return signature, constants


def _tool(name: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _inspect(cubin: bytes) -> tuple[int, int, int, int]:
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as out:
        out.write(cubin)
    try:
        usage = subprocess.run([_tool("cuobjdump"), "-res-usage", out.name], capture_output=True,
                               text=True, check=True).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", out.name], capture_output=True,
                              text=True, check=True).stdout
    finally:
        os.unlink(out.name)
    registers = int(re.search(r"REG:(\d+)", usage).group(1))
    stack = int(re.search(r"STACK:(\d+)", usage).group(1))
    spills = len(re.findall(r"\b(?:LDL|STL)\b", sass))
    mmas = len(re.findall(r"\b(?:HGMMA|HMMA)\b", sass))
    return registers, stack, spills, mmas


def compile_offline(spec: KernelSpec, options: KernelOptions, *, arch: int = 90, B=8, T=4096,
                    H=16, K=128, V=128, only: str = "",
                    module: types.ModuleType | None = None) -> list[KernelReport]:
    """Compile every launched kernel (every autotune config) for sm_<arch>; one report each.

    `only` keeps the kernels whose name contains it; `module` replaces the rendered module (to
    try an edited copy)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    reports, seen = [], set()
    for launch in record_launches(spec, options, B=B, T=T, H=H, K=K, V=V, module=module):
        fn = _jit_function(launch.kernel)
        if only not in fn.__name__:
            continue
        configs = getattr(launch.kernel, "configs", None) or [None]
        prune = getattr(launch.kernel, "early_config_prune", None)
        if prune is not None:
            configs = prune(configs, {}, **launch.kwargs)
        for config in configs:
            kwargs = dict(launch.kwargs)
            num_warps = kwargs.pop("num_warps", 4)
            num_stages = kwargs.pop("num_stages", 2)
            if config is not None:
                kwargs.update(config.kwargs)
                num_warps, num_stages = config.num_warps, config.num_stages
            signature, constants = _signature(fn, kwargs)
            tuned = {k: v for k, v in constants.items() if k in ("BK", "BV", "STORE_A", "USE_DO")}
            label = " ".join([*(f"{k}={v}" for k, v in tuned.items()),
                              f"w={num_warps}", f"s={num_stages}"])
            key = (fn.__name__, label)
            if key in seen:
                continue
            seen.add(key)
            compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constants),
                                      target=GPUTarget("cuda", arch, 32),
                                      options={"num_warps": num_warps, "num_stages": num_stages})
            registers, stack, spills, mmas = _inspect(compiled.asm["cubin"])
            reports.append(KernelReport(fn.__name__, label, registers, stack, spills, mmas,
                                        compiled.metadata.shared))
    return reports
