"""One compile result, one options object, one cache.

``build(source, options)`` analyses a program once, plans it once for the target, and gives a
``Compiled``: the analysis, the generated text, the layer class, the constructor's
hyper-parameters and the code hash. Results are cached by the source (its name and text) and
the options, so ``linarch.compile``, ``generate``, ``show``, the trainer and the search share
one analysis and one generated module per program; nothing reads generated code back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache

from linarch.codegen.plan import Plan, Target, plan
from linarch.dsl.analysis import Analysis
from linarch.dsl.diagnostics import LinarchError
from linarch.dsl.ir import Op
from linarch.dsl.pipeline import Result, analyse
from linarch.dsl.source import Source
from linarch.dsl.unit import Options

DTYPES = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class CompileOptions:
    """Every knob that changes the analysis or the generated code (with the source, the key of
    the cache). ``kernel_dtype`` and ``autotune`` apply to the Triton target only."""

    target: Target = Target.TORCH
    chunk_size: int = 64
    kernel_dtype: str = "auto"
    autotune: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", Target(self.target))
        if not isinstance(self.chunk_size, int) or isinstance(self.chunk_size, bool) or \
                not 1 <= self.chunk_size <= 4096:
            raise ValueError(f"chunk_size must be an integer in [1, 4096], got {self.chunk_size!r}")
        if self.kernel_dtype not in DTYPES:
            raise ValueError(f"kernel_dtype must be one of {', '.join(DTYPES)}, "
                             f"got {self.kernel_dtype!r}")


@dataclass(frozen=True)
class Compiled:
    """A program compiled for one target: everything the consumers need, computed once."""

    source: Source
    options: CompileOptions
    result: Result

    @cached_property
    def analysis(self) -> Analysis:
        return Analysis(self.result)

    @cached_property
    def plan(self) -> Plan:
        return plan(self.result.unit, self.options.target)

    @cached_property
    def text(self) -> str:
        unit = self.result.unit
        if self.options.target is Target.TORCH:
            from linarch.codegen.torch_backend import Generator, TorchOptions, checked

            return checked(Generator(unit, TorchOptions(self.options.chunk_size),
                                     self.plan).render())
        from linarch.codegen.triton_backend import generate

        return generate(unit, chunk_size=self.options.chunk_size,
                        dtype=self.options.kernel_dtype, autotune=self.options.autotune)

    @cached_property
    def code_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    @cached_property
    def layer(self) -> type:
        from linarch.codegen.loader import load_class

        cls = load_class(self.text, self.analysis.name, self.source.name)
        cls.__linarch__ = self
        return cls

    @property
    def hparams(self) -> Mapping[str, object]:
        """The constructor's hyper-parameters and their defaults, in header order."""
        return {n.name: n.attr("default") for _, n in self.result.unit.module.nodes(Op.HPARAM)}


@lru_cache(maxsize=512)
def analysed(source: Source, chunk_size: int = 64) -> Result:
    """The front end's result for a program (cached: check, analyze, compile and show of one
    program run the passes once)."""
    return analyse(source, Options(chunk_size))


@lru_cache(maxsize=256)
def build(source: Source, options: CompileOptions = CompileOptions()) -> Compiled:
    """The compiled program; raises LinarchError with every diagnostic if it has errors."""
    result = analysed(source, options.chunk_size)
    if not result.ok:
        raise LinarchError(list(result.diagnostics))
    return Compiled(source, options, result)


__all__ = ["build", "analysed", "Compiled", "CompileOptions", "Target"]
