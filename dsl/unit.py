"""What the passes share: the module under analysis and the facts each pass adds to it.

A pass takes a ``Unit`` and returns a new one (``dataclasses.replace``): the pipeline stays a
visible sequence of pure steps, and every fact a later stage needs has one owner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy as sp

from linarch.dsl.folding import evaluate
from linarch.dsl.ir import Module
from linarch.dsl.recurrence import Recurrence
from linarch.dsl.types import Type

if TYPE_CHECKING:  # the passes import this module; their result types are only annotations here
    from linarch.dsl.passes.causality import Dep
    from linarch.dsl.passes.complexity import Cost
    from linarch.dsl.passes.stability import Verdict


@dataclass(frozen=True)
class Options:
    """Knobs of the analysis (the chunk size used by the chunk-safety check and cost formulas)."""

    chunk_size: int = 64


@dataclass(frozen=True)
class Unit:
    module: Module
    options: Options = Options()
    symbols: Mapping[str, sp.Symbol] = field(default_factory=dict)
    defaults: Mapping[sp.Symbol, object] = field(default_factory=dict)
    types: Mapping[int, Type] = field(default_factory=dict)
    transitions: tuple[Recurrence, ...] = ()  # one typed recurrence form per state
    time: Mapping[int, Dep] = field(default_factory=dict)  # what each value may depend on
    cost: Cost | None = None
    stability: tuple[Verdict, ...] = ()

    def type(self, i: int) -> Type:
        return self.types[i]

    def at_defaults(self, expr: sp.Expr) -> float | None:
        """Numeric value of a formula at the declared defaults, or None if it has no value."""
        return evaluate(expr, self.defaults)
