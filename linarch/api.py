"""The public Python API: what users, the evaluation harness and the search loop call."""

from __future__ import annotations

from pathlib import Path

from linarch.codegen.build import Compiled, CompileOptions, Target, analysed
from linarch.codegen.build import build as _build
from linarch.dsl.analysis import Analysis
from linarch.dsl.diagnostics import Diagnostic, LinarchError, Reporter
from linarch.dsl.mutate import Mutation, MutationError  # noqa: F401 - re-exported
from linarch.dsl.mutate import crossover as _crossover
from linarch.dsl.mutate import mutate as _mutate
from linarch.dsl.mutate import recombine as _recombine
from linarch.dsl.parser import parse
from linarch.dsl.printer import format_program
from linarch.dsl.report import show as _show
from linarch.dsl.source import Source

Sourceish = str | Path | Source


EXAMPLES = Path(__file__).parent / "examples"


def example_path(name: str) -> Path:
    """The shipped example `name` (`deltanet`, `gated_deltanet` ...), as installed with linarch."""
    return EXAMPLES / f"{name}.lin"


def load_source(path_or_source: Sourceish) -> Source:
    """A path (``Path``, or a one-line string ending in .lin) is read; other strings are DSL."""
    if isinstance(path_or_source, Source):
        return path_or_source
    if isinstance(path_or_source, Path):
        return Source.from_path(path_or_source)
    text = str(path_or_source)
    if "\n" not in text and text.strip().endswith(".lin"):
        return Source.from_path(text.strip())
    return Source(text)


def check(path_or_source: Sourceish, *, chunk_size: int = 64) -> list[Diagnostic]:
    """Every diagnostic of a program (errors and warnings), sorted by position."""
    return list(analysed(load_source(path_or_source), chunk_size).diagnostics)


def analyze(path_or_source: Sourceish, *, chunk_size: int = 64) -> Analysis:
    """Check a program and return its analysis; raises LinarchError if it has errors."""
    result = analysed(load_source(path_or_source), chunk_size)
    if not result.ok:
        raise LinarchError(list(result.diagnostics))
    return Analysis(result)


def show(path_or_source: Sourceish, *, chunk_size: int = 64) -> str:
    """What the compiler understood, and how each backend will compute every state."""
    source = load_source(path_or_source)
    result = analysed(source, chunk_size)
    text = _show(result)
    if result.ok:
        text += "\n" + _backends(source, chunk_size)
    return text


def _backends(source: Source, chunk_size: int) -> str:
    lines = ["  backends:"]
    for target in (Target.TORCH, Target.TRITON):
        for sp in _build(source, CompileOptions(target, chunk_size)).plan.states:
            how = sp.how if target is Target.TORCH else sp.how.split(";")[0]
            lines.append(f"    {target.value:<6} {sp.rec.name}: {how}")
    return "\n".join(lines)


TARGETS = tuple(t.value for t in Target)


def options(target: str | Target = "torch", *, chunk_size: int = 64,
            kernel_dtype: str | None = None) -> CompileOptions:
    """The one options object for a target. For triton the kernels' input dtype is `auto`
    unless `kernel_dtype` names one: the generated file chooses when it is imported (bf16 on a
    GPU, fp32 under TRITON_INTERPRET=1, which computes bf16 wrong), as it chooses whether to
    autotune, so nothing in the environment at generation time changes a byte of the file."""
    name = target.value if isinstance(target, Target) else target
    if name not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    target = Target(name)
    if target is Target.TORCH:
        if kernel_dtype is not None:
            raise ValueError("kernel_dtype applies to target='triton' only")
        return CompileOptions(target, chunk_size)
    return CompileOptions(target, chunk_size, kernel_dtype or "auto")


def backend(device_type: str) -> str:
    """Which target's code runs a compiled layer on a device of this type: "triton" (the fused
    kernels) on CUDA, or anywhere under TRITON_INTERPRET=1, when triton is installed; "torch"
    (the chunked PyTorch form, also the reference) otherwise."""
    import importlib.util
    import os

    runs_kernels = device_type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
    return "triton" if runs_kernels and importlib.util.find_spec("triton") else "torch"


def default_target() -> str:
    """The target that training, the search's evaluation and the HF model compile for: triton
    where a CUDA device is present (its file falls back to the torch form on CPU tensors),
    torch on a CPU-only machine."""
    import torch

    return backend("cuda" if torch.cuda.is_available() else "cpu")


def build(path_or_source: Sourceish, target: str | Target = "torch", *, chunk_size: int = 64,
          kernel_dtype: str | None = None) -> Compiled:
    """The one compile result of a program (analysis, generated text, layer class,
    hyper-parameters, code hash), cached by the source and the options; raises LinarchError
    with every diagnostic if the program has errors."""
    return _build(load_source(path_or_source),
                  options(target, chunk_size=chunk_size, kernel_dtype=kernel_dtype))


def generate(path_or_source: Sourceish, target: str = "torch", *, chunk_size: int = 64,
             kernel_dtype: str | None = None) -> str:
    """The generated Python source of a program's layer (one file; torch, or torch + triton).

    ``kernel_dtype`` (triton target only: "auto", "bf16", "fp16" or "fp32") is the dtype the fused
    kernels take their inputs in (see ``options``)."""
    return build(path_or_source, target, chunk_size=chunk_size, kernel_dtype=kernel_dtype).text


def compile(path_or_source: Sourceish, target: str = "torch", *, chunk_size: int = 64,  # noqa: A001
            kernel_dtype: str | None = None) -> type:
    """The layer class of a program: ``Layer(hidden_size=..., num_heads=...)`` is an nn.Module
    with fla's constructor keywords and forward signature (``kernel_dtype``: see `generate`)."""
    return build(path_or_source, target, chunk_size=chunk_size, kernel_dtype=kernel_dtype).layer


def format_source(path_or_source: Sourceish) -> str:
    """Canonical text of a program (comments kept); raises LinarchError on syntax errors."""
    source = load_source(path_or_source)
    report = Reporter(source)
    program = parse(source, report)
    if report.has_errors:
        raise LinarchError(report.diagnostics)
    return format_program(program)


def mutate(source: Sourceish, seed: int, *, max_tries: int = 30) -> Mutation:
    """One random typed mutation of a program (gate kinds, transition class, paths, widths,
    feature maps, norms, routers, short convolutions, constants, micro-steps, a second state):
    a program that checks clean, keeps every stability fact, and is a different architecture
    or has a new hyper-parameter default. Deterministic in ``seed``; raises MutationError when
    no operator yields one within ``max_tries`` checked programs."""
    return _mutate(load_source(source).text, seed, max_tries=max_tries)


def crossover(a: Sourceish, b: Sourceish, seed: int, *, max_tries: int = 30) -> Mutation:
    """Program ``a`` with one binding (or its return) defined as program ``b`` defines it, with
    the parameters and helpers that definition needs; raises MutationError if none checks."""
    return _crossover(load_source(a).text, load_source(b).text, seed, max_tries=max_tries)


def recombine(a: Sourceish, b: Sourceish, seed: int, *, max_tries: int = 30) -> Mutation:
    """Program ``a`` with one of program ``b``'s states (its update, its readout and what they
    read, with weights of its own) as a second memory whose readout is added to a's; raises
    MutationError if no pairing of readouts checks."""
    return _recombine(load_source(a).text, load_source(b).text, seed, max_tries=max_tries)
