"""Compile generated kernels for an NVIDIA GPU without one, and report what each costs.

Triton compiles to a cubin for any target without a driver, and its wheel ships cuobjdump. So on
a CPU machine we can still check that every kernel of a generated module compiles for, say,
sm_90, and read its register count, stack (local memory) size, the number of spill
instructions (LDL/STL) in the SASS and its shared memory, and from them how many blocks fit on
one SM: the first things that make a Triton kernel slow.

The launch arguments come from the module's own launch functions: `*_fwd` and `*_bwd` run on
meta tensors with every kernel launcher replaced by a recorder, so the compiled signatures are
exactly the launched ones. A kernel is compiled once per config it may run with: every autotune
config (pruned to the head dims, as the autotuner prunes them) when the options autotune, else
the fixed config.
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
from .render import input_shapes
from .spec import KernelOptions, KernelSpec

# an sm_90 SM (H100 / H200): 64K 32-bit registers, 228 KB of shared memory (1 KB of it reserved
# per block), at most 64 resident warps and 32 resident blocks
SM_REGISTERS = 65536
SM_SHARED = 228 * 1024
SM_WARPS = 64
SM_BLOCKS = 32

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
    num_warps: int = 4

    @property
    def blocks_per_sm(self) -> int:
        """Resident blocks per SM, the least of the register, shared memory, warp and block
        limits (registers are allocated per warp in units of 256)."""
        per_warp = -(-self.registers * 32 // 256) * 256
        by_registers = SM_REGISTERS // (per_warp * self.num_warps)
        by_shared = SM_SHARED // (self.shared + 1024)
        return min(by_registers, by_shared, SM_WARPS // self.num_warps, SM_BLOCKS)

    def line(self) -> str:
        return (f"{self.kernel:44s} {self.config:44s} regs {self.registers:3d}  "
                f"stack {self.stack:5d}  spills {self.spills:5d}  mma {self.mmas:4d}  "
                f"smem {self.shared:6d}  blocks/SM {self.blocks_per_sm:2d}")


@dataclass
class _Launch:
    launcher: object  # the module's _Launcher: its kernel and configs
    kwargs: dict


class _Recorder:
    """Stands in for a launcher: `launcher[grid](**kwargs)` records the call."""

    def __init__(self, launcher: object, launches: list[_Launch]):
        self.launcher, self.launches = launcher, launches

    def __getitem__(self, grid):
        def launch(**kwargs):
            self.launches.append(_Launch(self.launcher, kwargs))
        return launch


def _example_inputs(spec: KernelSpec, module: types.ModuleType, B: int, T: int, H: int, K: int,
                    V: int) -> tuple[list, dict]:
    dtype = module.DTYPE
    meta = torch.device("meta")
    n = spec.micro_steps

    def t(*shape, dt=dtype):
        return torch.empty(*shape, dtype=dt, device=meta)

    args = [t(B, T, H, K), t(B, n * T, H, K), t(B, n * T, H, V)]
    for shape in input_shapes(spec).values():
        dims = eval(shape, {}, {"B": B, "T": T, "H": H, "K": K})  # a tuple expression
        args.append(t(*dims, dt=torch.float32 if len(dims) == 1 else dtype))
    return args, {"h0": t(B, H, K, V, dt=torch.float32), "do": t(B, T, H, V),
                  "dht": t(B, H, K, V, dt=torch.float32)}


def record_launches(spec: KernelSpec, options: KernelOptions, *, B=8, T=4096, H=16, K=128,
                    V=128, module: types.ModuleType | None = None) -> list[_Launch]:
    """Every kernel launch of one forward and one backward (through the autograd Function, on
    meta tensors), with its keyword arguments."""
    module = module or load_kernels(spec, options)
    launches: list[_Launch] = []
    launchers = {n: v for n, v in vars(module).items() if isinstance(v, module._Launcher)}
    args, extra = _example_inputs(spec, module, B, T, H, K, V)
    try:
        for name, launcher in launchers.items():
            setattr(module, name, _Recorder(launcher, launches))
        o, state = getattr(module, f"chunk_{spec.name}")(
            *(a.requires_grad_(a.is_floating_point()) for a in args), scale=K ** -0.5,
            initial_state=extra["h0"].requires_grad_(), output_final_state=True)
        torch.autograd.backward((o, state), (extra["do"], extra["dht"]))
    finally:
        for name, launcher in launchers.items():
            setattr(module, name, launcher)
    return launches


def _jit_function(kernel):
    from triton.runtime.jit import JITFunction

    while not isinstance(kernel, JITFunction):
        kernel = kernel.fn
    return kernel


DIVISIBLE = [["tt.divisibility", 16]]


def _signature(fn, kwargs: dict) -> tuple[dict, dict, dict]:
    """(signature, constants, attrs) as triton.jit specializes a launch with these arguments:
    tensors (16-byte aligned, as torch allocates them) and ints divisible by 16 are marked so
    (without it the compiler cannot vectorize a single load), ints equal to 1 become constants,
    except for do_not_specialize parameters."""
    signature, constants, attrs = {}, {}, {}
    for index, param in enumerate(fn.params):
        value = kwargs[param.name]
        free = index in fn.do_not_specialize or param.name in fn.do_not_specialize
        if param.is_constexpr or value is None or (
                type(value) is int and value == 1 and not free):
            signature[param.name] = "constexpr"
            constants[param.name] = value
        elif isinstance(value, torch.Tensor):
            signature[param.name] = "*" + _TORCH_TO_TRITON[value.dtype]
            attrs[(index,)] = DIVISIBLE
        elif isinstance(value, bool):
            signature[param.name] = "i1"
        elif isinstance(value, int):
            signature[param.name] = "i32" if -2 ** 31 <= value < 2 ** 31 else "i64"
            if value % 16 == 0 and not free:
                attrs[(index,)] = DIVISIBLE
        else:
            signature[param.name] = "fp32"
    return signature, constants, attrs


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


def _configs(launch: _Launch, module: types.ModuleType, options: KernelOptions) -> list:
    """The configs the launch may run with: the pruned autotune list, or the fixed config."""
    launcher, kwargs = launch.launcher, launch.kwargs
    if options.autotune:
        return module._fit_blocks(launcher.configs, {}, **kwargs)
    return [launcher.fixed_config(kwargs)]


TUNED = ("BK", "BV", "BR")


def kernels_digest(specs: list[KernelSpec], options: KernelOptions) -> str:
    """16 hex digits over the source of every kernel of the specs' modules and the configs each
    may run with: what an offline table depends on (not the Python glue around them)."""
    import hashlib

    parts = []
    for spec in specs:
        module = load_kernels(spec, options)
        for _, launcher in sorted(vars(module).items()):
            if isinstance(launcher, module._Launcher):
                parts.append(_jit_function(launcher.kernel).src)
                parts.append(repr([(c.kwargs, c.num_warps, c.num_stages)
                                   for c in launcher.configs]))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]



def compile_key(fn, signature: dict, constants: dict, attrs: dict, num_warps: int,
                num_stages: int, arch: int) -> str:
    """What one compile depends on: the kernel's source (its own name taken out), the
    specialization, the config, the target and the compiler."""
    import hashlib

    import triton

    text = "|".join([fn.src.replace(fn.__name__, "@"), repr(sorted(signature.items())),
                     repr(sorted((k, repr(v)) for k, v in constants.items())),
                     repr(sorted(attrs.items())), f"{num_warps} {num_stages} {arch}",
                     triton.__version__])
    return hashlib.sha256(text.encode()).hexdigest()


def compile_offline(spec: KernelSpec, options: KernelOptions, *, arch: int = 90, B=8, T=4096,
                    H=16, K=128, V=128, only: str = "", configs: int | None = None,
                    module: types.ModuleType | None = None,
                    cache: dict | None = None) -> list[KernelReport]:
    """Compile every launched kernel (every config it may run with) for sm_<arch>; one report
    each. `only` keeps the kernels whose name contains it; `configs` keeps the first n configs of
    each kernel; `module` replaces the rendered module (to try an edited copy); `cache` maps
    compile_key -> (registers, stack, spills, mmas, shared) of earlier compiles, is read and
    filled."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    cache = {} if cache is None else cache
    module = module or load_kernels(spec, options)
    reports, seen = [], set()
    for launch in record_launches(spec, options, B=B, T=T, H=H, K=K, V=V, module=module):
        fn = _jit_function(launch.launcher.kernel)
        if only not in fn.__name__:
            continue
        for config in _configs(launch, module, options)[:configs]:
            kwargs = {**launch.kwargs, **config.kwargs}
            signature, constants, attrs = _signature(fn, kwargs)
            tuned = {k: v for k, v in constants.items() if k in TUNED}
            label = " ".join([*(f"{k}={v}" for k, v in tuned.items()),
                              f"w={config.num_warps}", f"s={config.num_stages}"])
            key = (fn.__name__, label)
            if key in seen:
                continue
            seen.add(key)
            ckey = compile_key(fn, signature, constants, attrs, config.num_warps,
                               config.num_stages, arch)
            if ckey not in cache:
                compiled = triton.compile(
                    ASTSource(fn=fn, signature=signature, constexprs=constants, attrs=attrs),
                    target=GPUTarget("cuda", arch, 32),
                    options={"num_warps": config.num_warps, "num_stages": config.num_stages})
                cache[ckey] = (*_inspect(compiled.asm["cubin"]), compiled.metadata.shared)
            registers, stack, spills, mmas, shared = cache[ckey]
            reports.append(KernelReport(fn.__name__, label, registers, stack, spills, mmas,
                                        shared, config.num_warps))
    return reports
