"""One diagnostic type for every problem the front end finds, in text for people and JSON for
programs (the search loop feeds the JSON to an LLM that repairs the program).

Every code is registered in ``CODES`` with its severity and title, so that the list in
docs/language.md, the golden tests and the emitters cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from linarch.dsl.source import Source, Span


class Severity(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Code:
    code: str
    severity: Severity
    title: str


def _codes(*rows: tuple[str, str, str]) -> dict[str, Code]:
    return {c: Code(c, Severity(s), t) for c, s, t in rows}


CODES: dict[str, Code] = _codes(
    # syntax
    ("LA001", "error", "syntax error"),
    ("LA002", "error", "unclosed or unbalanced bracket"),
    ("LA003", "error", "missing or misplaced mixer header"),
    ("LA004", "error", "invalid character, string or number"),
    # names, types and shapes
    ("LA101", "error", "undefined name"),
    ("LA102", "error", "name defined twice"),
    ("LA103", "error", "shapes do not match"),
    ("LA104", "error", "reshape does not preserve the number of features"),
    ("LA105", "error", "wrong arguments to a builtin or parameter"),
    ("LA106", "error", "unknown function or parameter kind"),
    ("LA107", "error", "value of the wrong kind"),
    ("LA108", "error", "state declared but never updated"),
    ("LA109", "error", "state read between its micro-steps"),
    ("LA110", "error", "missing or repeated return"),
    ("LA111", "error", "output does not have hidden_size features"),
    ("LA112", "warning", "parameter declared but never used"),
    ("LA113", "error", "invalid hyper-parameter"),
    ("LA114", "error", "dimension is not a positive integer"),
    ("LA115", "error", "reserved name"),
    ("LA116", "error", "value outside the domain of a function"),
    ("LA117", "warning", "value may leave the domain of a function"),
    ("LA118", "error", "static formula too large to compute"),
    # causality
    ("LA201", "error", "reduction over time reads the future"),
    ("LA202", "error", "reverse scan over time reads the future"),
    ("LA203", "error", "convolution is not causal"),
    ("LA204", "error", "global convolution has no causal form"),
    ("LA205", "error", "attention over the whole sequence"),
    ("LA206", "error", "value mixes examples across the batch"),
    # transitions
    ("LA301", "error", "state update is not affine in the state"),
    ("LA302", "error", "transition has no known structure"),
    ("LA303", "error", "state is not updated with a per-token write"),
    ("LA304", "error", "states coupled through each other"),
    # complexity
    ("LA401", "error", "cost per token grows with sequence length"),
    ("LA402", "error", "state grows with sequence length"),
    ("LA403", "error", "unknown complexity class"),
    ("LA404", "warning", "declared complexity is higher than needed"),
    # stability
    ("LA501", "warning", "decay not proven <= 1"),
    ("LA502", "warning", "rate outside [0, 2]"),
    ("LA503", "warning", "delta-rule key not proven unit-norm"),
    ("LA504", "warning", "DPLR transition without a spectral guarantee"),
    ("LA505", "warning", "gate lower bound overflows the chunk"),
)


@dataclass(frozen=True)
class Diagnostic:
    """A located problem: stable code, message, span, hint."""

    code: str
    message: str
    span: Span | None
    source_name: str = "<string>"
    hint: str | None = None
    excerpt: str = ""

    @property
    def severity(self) -> str:
        return CODES[self.code].severity.value

    @property
    def is_error(self) -> bool:
        return CODES[self.code].severity is Severity.ERROR

    @property
    def line(self) -> int:
        return self.span.line if self.span else 0

    @property
    def col(self) -> int:
        return self.span.col if self.span else 0

    def to_dict(self) -> dict:
        span = self.span
        return {
            "code": self.code,
            "severity": self.severity,
            "title": CODES[self.code].title,
            "message": self.message,
            "file": self.source_name,
            "line": span.line if span else None,
            "col": span.col if span else None,
            "end_line": span.end_line if span else None,
            "end_col": span.end_col if span else None,
            "hint": self.hint,
            "excerpt": self.excerpt,
        }

    def render(self) -> str:
        """file:line:col: severity CODE: message, the source line, a caret under the span, hint."""
        where = f"{self.source_name}:{self.line}:{self.col}" if self.span else self.source_name
        text = f"{where}: {self.severity} {self.code}: {self.message}"
        if self.excerpt:
            text += "\n" + self.excerpt
        if self.hint:
            text += f"\n   hint: {self.hint}"
        return text

    def __str__(self) -> str:
        return self.render()


def excerpt(source: Source, span: Span | None) -> str:
    """The span's first line with a gutter and carets under the spanned columns."""
    if span is None or span.line < 1:
        return ""
    text = source.line_text(span.line).rstrip("\n")
    last_col = span.end_col if span.end_line == span.line else len(text) + 1
    width = max(1, last_col - span.col)
    gutter = f"{span.line:>5} | "
    pad = " " * (len(gutter) - 2) + "| "
    return f"{gutter}{text}\n{pad}{' ' * (span.col - 1)}{'^' * width}"


class Reporter:
    """Collects diagnostics for one source; the single place where a Diagnostic is made."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []

    def __call__(self, code: str, message: str, span: Span | None, hint: str | None = None) -> None:
        if code not in CODES:
            raise KeyError(f"unregistered diagnostic code {code}")
        diag = Diagnostic(code, message, span, self.source.name, hint, excerpt(self.source, span))
        if diag not in self.diagnostics:
            self.diagnostics.append(diag)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)


def sort_key(d: Diagnostic) -> tuple:
    return (d.source_name, d.line, d.col, d.code)


def to_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_dict() for d in diagnostics], indent=2)


class LinarchError(Exception):
    """Raised by the public API when a program has errors; carries every diagnostic."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.render() for d in diagnostics if d.is_error))
