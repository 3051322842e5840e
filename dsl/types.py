"""Types of IR values: kind, symbolic feature shape, and refinements (range, unit norm).

A per-token value of type ``token[H, dk]`` has, at run time, shape [B, T, H, dk]; the batch and
time axes are implicit and never mixed by a well-typed program. Dimensions are SymPy expressions
of the hyper-parameters, so a shape error names formulas, not numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import sympy as sp

from linarch.dsl.intervals import Interval


class Kind(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    STATIC = "static"  # time-invariant: hyper-parameters, dims, literals, weight tensors
    TOKEN = "token"  # per-token tensor (states included: S_t is a per-token value)
    MODULE = "module"  # a parameter module (linear, conv, norm, ...) to be applied
    IDENTITY = "identity"  # I, the identity operator, square of any size
    AXIS = "axis"  # `time` or `batch`
    STRING = "string"
    BOOL = "bool"
    ERROR = "error"  # poisoned: an error was already reported
    EFFECT = "effect"  # return / loss


Shape = tuple[sp.Expr, ...]


@dataclass(frozen=True)
class ModuleInfo:
    kind: str
    widths: tuple[sp.Expr, ...]  # in -> ... -> out for projections; (channels,) for convs/norms
    window: sp.Expr | None = None  # causal window for convolutions


@dataclass(frozen=True)
class Type:
    kind: Kind
    shape: Shape = ()
    value: sp.Expr | None = None  # a static scalar's symbolic value
    literal: object = None  # a string, bool or axis name
    range: Interval = Interval()
    unit: bool = False  # unit L2 norm over the last axis
    module: ModuleInfo | None = None

    def with_(self, **kw) -> Type:
        return replace(self, **kw)

    @property
    def is_error(self) -> bool:
        return self.kind is Kind.ERROR

    @property
    def is_tensor(self) -> bool:
        return self.kind in (Kind.STATIC, Kind.TOKEN)

    @property
    def is_scalar_static(self) -> bool:
        return self.kind is Kind.STATIC and self.value is not None and not self.shape

    def describe(self) -> str:
        if self.kind in (Kind.STATIC, Kind.TOKEN):
            dims = ", ".join(str(d) for d in self.shape)
            text = f"{self.kind.value}[{dims}]"
            if self.value is not None:
                text = f"static {self.value}"
            if not self.range.is_top:
                text += f" in {self.range}"
            if self.unit:
                text += " unit"
            return text
        if self.kind is Kind.MODULE and self.module:
            return f"{self.module.kind}({' -> '.join(str(w) for w in self.module.widths)})"
        return self.kind.value


ERROR = Type(Kind.ERROR)


def dims_equal(a: sp.Expr, b: sp.Expr) -> bool:
    """Provably equal for every value of the hyper-parameters."""
    if a == b:
        return True
    try:
        diff = sp.expand(sp.nsimplify(a) - sp.nsimplify(b))
        return diff == 0 or sp.cancel(diff) == 0
    except (TypeError, ValueError, sp.SympifyError):
        return False


def shapes_equal(a: Shape, b: Shape) -> bool:
    return len(a) == len(b) and all(dims_equal(x, y) for x, y in zip(a, b))


def alignment(small: Shape, big: Shape) -> tuple[int, ...] | None:
    """Where the axes of ``small`` stand among the axes of ``big`` under the language's
    broadcasting rule: a prefix first (``[H]`` on ``[H, dv, dk]`` is axis 0, one value per head),
    else a suffix (``[dk]`` is the last axis, one value per channel shared by the heads); a
    scalar stands on no axis. None when neither fits.

    This is the one statement of the rule: the type pass, the recurrence form and the code
    generator all place operands with it, so generated code never relies on torch's
    right-aligned broadcasting (which would align a per-token value with a static axis)."""
    if len(small) > len(big):
        return None
    if shapes_equal(big[: len(small)], small):
        return tuple(range(len(small)))
    if shapes_equal(big[len(big) - len(small):], small):
        return tuple(range(len(big) - len(small), len(big)))
    return None


def broadcast(a: Shape, b: Shape) -> Shape | None:
    """Per-head values broadcast over trailing axes: the shorter shape must be a prefix of the
    longer (``[H] * [H, dk, dk]``) or, failing that, a suffix (``[dk] * [H, dk]``); scalars
    broadcast everywhere. None when neither holds (see ``alignment``)."""
    if len(a) < len(b):
        a, b = b, a
    return a if alignment(b, a) is not None else None


def numel(shape: Shape) -> sp.Expr:
    return sp.Mul(*shape) if shape else sp.Integer(1)


def fmt_shape(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"
