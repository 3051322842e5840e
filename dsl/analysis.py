"""What the front end proved about a checked program, at its declared defaults.

``Analysis`` is a read-only view of the pipeline's ``Result``: the search, the evaluation
harness and ``linarch show`` read the transition classes, costs and hashes from here, never
from the IR again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from linarch.dsl.diagnostics import Diagnostic
from linarch.dsl.hashing import structural_hash
from linarch.dsl.ir import Module, Op
from linarch.dsl.pipeline import Result
from linarch.dsl.report import show


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
        return show(self.result)
