"""The public Python API: what users, the evaluation harness and the search loop call."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import networkx as nx

from linarch.dsl.diagnostics import Diagnostic, LinarchError, Reporter
from linarch.dsl.hashing import structural_hash
from linarch.dsl.ir import Module, Op
from linarch.dsl.mutate import Mutation, MutationError  # noqa: F401 - re-exported
from linarch.dsl.mutate import crossover as _crossover
from linarch.dsl.mutate import mutate as _mutate
from linarch.dsl.mutate import recombine as _recombine
from linarch.dsl.parser import parse
from linarch.dsl.pipeline import Result, analyse
from linarch.dsl.printer import format_program
from linarch.dsl.report import show as _show
from linarch.dsl.source import Source
from linarch.dsl.unit import Options

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
    return list(analyse(load_source(path_or_source), Options(chunk_size)).diagnostics)


@dataclass(frozen=True)
class Analysis:
    """A checked program and the facts the compiler proved about it, at the declared defaults."""

    result: Result

    @property
    def module(self) -> Module:
        return self.result.unit.module

    @property
    def name(self) -> str:
        return self.module.name

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return self.result.diagnostics

    @cached_property
    def structural_hash(self) -> str:
        return structural_hash(self.module)

    @property
    def graph(self) -> nx.MultiDiGraph:
        return self.module.graph

    def _at(self, expr) -> int:
        unit = self.result.unit
        return unit.cost.at(unit, expr)

    @property
    def flops_per_token(self) -> int:
        return self._at(self.result.unit.cost.flops_per_token)

    @property
    def state_bytes(self) -> int:
        return self._at(self.result.unit.cost.state_bytes)

    @property
    def params(self) -> int:
        return self._at(self.result.unit.cost.params)

    @property
    def transition_classes(self) -> tuple[str, ...]:
        return tuple(t.label for t in self.result.unit.transitions)

    @property
    def num_paths(self) -> int:
        unit = self.result.unit
        paths = [int(unit.at_defaults(unit.types[n.args[0]].shape[-2]) or 1)
                 for _, n in self.module.nodes(Op.CALL) if n.attr("fn") == "mix"]
        return max(paths, default=1)

    def show(self) -> str:
        return _show(self.result)


def analyze(path_or_source: Sourceish, *, chunk_size: int = 64) -> Analysis:
    """Check a program and return its analysis; raises LinarchError if it has errors."""
    result = analyse(load_source(path_or_source), Options(chunk_size))
    if not result.ok:
        raise LinarchError(list(result.diagnostics))
    return Analysis(result)


def show(path_or_source: Sourceish, *, chunk_size: int = 64) -> str:
    """What the compiler understood, and how each backend will compute every state."""
    result = analyse(load_source(path_or_source), Options(chunk_size))
    text = _show(result)
    if result.ok:
        text += "\n" + _backends(result)
    return text


def _backends(result: Result) -> str:
    lines = ["  backends:"]
    try:
        from linarch.codegen.torch_backend import state_lowerings
        from linarch.codegen.triton_backend import TritonOptions, _TritonGenerator

        for low in state_lowerings(result.unit):
            lines.append(f"    torch  {low.name}: {low.reason}")
        for low in _TritonGenerator(result.unit, TritonOptions()).lowerings():
            lines.append(f"    triton {low.name}: {low.reason.split(';')[0]}")
    except ImportError as exc:  # the front end works without the codegen extras
        lines.append(f"    (code generation unavailable: {exc})")
    return "\n".join(lines)


TARGETS = ("torch", "triton")


def generate(path_or_source: Sourceish, target: str = "torch", *, chunk_size: int = 64,
             kernel_dtype: str | None = None) -> str:
    """The generated Python source of a program's layer (one file; torch, or torch + triton).

    ``kernel_dtype`` (triton target only: "bf16", "fp16" or "fp32") is the dtype the fused
    kernels take their inputs in; by default bf16 autotuned, or fp32 with one fixed config under
    TRITON_INTERPRET=1 (the interpreter can neither autotune nor compute in bf16)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    result = analyse(load_source(path_or_source), Options(chunk_size))
    if not result.ok:
        raise LinarchError(list(result.diagnostics))
    if target == "torch":
        if kernel_dtype is not None:
            raise ValueError("kernel_dtype applies to target='triton' only")
        from linarch.codegen.torch_backend import TorchOptions
        from linarch.codegen.torch_backend import generate as torch_generate

        return torch_generate(result.unit, TorchOptions(chunk_size=chunk_size))
    import os

    from linarch.codegen.triton_backend import generate as triton_generate

    interpreting = os.environ.get("TRITON_INTERPRET") == "1"
    dtype = kernel_dtype or ("fp32" if interpreting else "bf16")
    return triton_generate(result.unit, chunk_size=chunk_size, dtype=dtype,
                           autotune=not interpreting)


def compile(path_or_source: Sourceish, target: str = "torch", *, chunk_size: int = 64,  # noqa: A001
            kernel_dtype: str | None = None) -> type:
    """The layer class of a program: ``Layer(hidden_size=..., num_heads=...)`` is an nn.Module
    with fla's constructor keywords and forward signature (``kernel_dtype``: see `generate`)."""
    from linarch.codegen.loader import load_class

    source = load_source(path_or_source)
    text = generate(source, target, chunk_size=chunk_size, kernel_dtype=kernel_dtype)
    result = analyse(source, Options(chunk_size))
    return load_class(text, result.unit.module.name, source.name)


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
