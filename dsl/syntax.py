"""The syntax tree of a linarch program: frozen dataclasses, one per construct, each with its span.

This is what the parser produces and what ``linarch fmt`` prints back; the IR graph is built from
it by ``linarch.dsl.lower``. Comments ride on statements so that formatting never loses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from linarch.dsl.source import Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Num:
    value: int | float
    text: str
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Str:
    value: str
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Name:
    id: str
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Unary:
    op: str  # "-"
    operand: Expr
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / @ **
    left: Expr
    right: Expr
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Chain:
    """``a -> b -> c`` inside a parameter constructor: the widths of a projection."""

    items: tuple[Expr, ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr | Chain | Keyword, ...]
    span: Span | None = field(default=None, compare=False)
    func_span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Reshape:
    """``value as [d1, d2]``: per-token features viewed as heads."""

    value: Expr
    dims: tuple[Expr, ...]
    span: Span | None = field(default=None, compare=False)


Expr = Num | Str | Bool | Name | Unary | Binary | Call | Reshape
Literal = Num | Str | Bool

# ---------------------------------------------------------------- statements


@dataclass(frozen=True)
class HParam:
    """``name = default`` in the header, with an optional declared range ``in [lo, hi]``: the
    values the constructor accepts, over which the compiler proves its bounds. A default that
    is a formula of earlier hyper-parameters (``num_heads = hidden_size / head_dim``) is computed
    by the constructor when the keyword is omitted or None."""

    name: str
    default: Literal | Expr
    span: Span | None = field(default=None, compare=False)
    range: tuple[Literal, Literal] | None = None


@dataclass(frozen=True)
class Header:
    name: str
    hparams: tuple[HParam, ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Section:
    """``params:``; the declarations that follow are the layer's parameters."""

    name: str
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ParamDecl:
    names: tuple[str, ...]
    ctor: Call
    span: Span | None = field(default=None, compare=False)
    name_spans: tuple[Span, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class StateDecl:
    name: str
    shape: tuple[Expr, ...]
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Assign:
    name: str
    value: Expr
    span: Span | None = field(default=None, compare=False)
    name_span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Return:
    value: Expr
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class LossDecl:
    name: str
    value: Expr
    span: Span | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ComplexityDecl:
    name: str
    span: Span | None = field(default=None, compare=False)


Stmt = Header | Section | ParamDecl | StateDecl | Assign | Return | LossDecl | ComplexityDecl


@dataclass(frozen=True)
class Line:
    """A statement with the comments around it (kept for ``linarch fmt``)."""

    stmt: Stmt
    comments_before: tuple[str, ...] = ()
    comment_after: str | None = None
    blank_before: bool = False


@dataclass(frozen=True)
class Program:
    header: Header | None
    lines: tuple[Line, ...]
    trailing_comments: tuple[str, ...] = ()
    # names that lines which failed to parse would have defined (and "return" for a failed
    # return): lowering treats them as already reported instead of as undefined
    broken: tuple[str, ...] = ()

    @property
    def statements(self) -> tuple[Stmt, ...]:
        return tuple(line.stmt for line in self.lines)
