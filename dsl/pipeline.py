"""The front end in one screen: parse, lower, then the passes in order.

    text --parse--> syntax tree --lower--> IR module --PASSES--> analysed unit + diagnostics

Each pass reads the unit, reports problems, and returns a new unit with its facts added. A pass
that depends on an earlier one being clean is skipped when that one reported errors, so a
program's diagnostics are what is wrong with it, not a cascade.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from linarch.dsl.diagnostics import Diagnostic, Reporter, sort_key
from linarch.dsl.ir import Module
from linarch.dsl.lower import lower
from linarch.dsl.parser import parse
from linarch.dsl.passes.causality import causality
from linarch.dsl.passes.complexity import complexity
from linarch.dsl.passes.stability import stability
from linarch.dsl.passes.transitions import transitions
from linarch.dsl.passes.typecheck import typecheck
from linarch.dsl.source import Source
from linarch.dsl.unit import Options, Unit

Pass = Callable[[Unit, Reporter], Unit]

# (name, pass, runs only if no error so far)
PASSES: tuple[tuple[str, Pass, bool], ...] = (
    ("typecheck", typecheck, False),
    ("transitions", transitions, True),
    ("causality", causality, False),
    ("complexity", complexity, True),
    ("stability", stability, True),
)


@dataclass(frozen=True)
class Result:
    """Everything the front end learned about one program."""

    source: Source
    unit: Unit | None
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)

    @property
    def module(self) -> Module | None:
        return self.unit.module if self.unit else None

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.is_error)


DEFAULT_OPTIONS = Options()


def analyse(source: Source, options: Options = DEFAULT_OPTIONS) -> Result:
    report = Reporter(source)
    program = parse(source, report)
    if program.header is None:
        return Result(source, None, tuple(sorted(report.diagnostics, key=sort_key)))
    module = lower(program, source, report)
    unit = Unit(module, options)
    for _name, run, needs_clean in PASSES:
        if needs_clean and report.has_errors:
            continue
        unit = run(unit, report)
    return Result(source, unit, tuple(sorted(report.diagnostics, key=sort_key)))
