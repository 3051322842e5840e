"""Static arithmetic with bounds: folding constants and evaluating formulas at the defaults.

Static values (hyper-parameters, literals, dimensions) are SymPy formulas. Left alone, SymPy
evaluates ``2 ** 2 ** 2 ** 2 ** 2 ** 2`` or ``10 ** 10 ** 10`` exactly, which never returns, and
expands ``(H + 1) ** 10 ** 6`` when comparing shapes. Here every static operation is checked
before SymPy sees it: a number may not exceed ``10 ** MAX_DIGITS``, a symbolic power's exponent
may not exceed ``MAX_EXPONENT``; beyond that ``FoldError`` says why (the type pass reports it at
the node, LA118). Numbers are evaluated at the defaults in floating point, node by node, never
by substituting into SymPy (which would evaluate exactly again).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import sympy as sp

MAX_DIGITS = 300  # |static number| < 10**300: beyond any width, rate or constant a layer needs
MAX_EXPONENT = 64  # a symbolic power beyond this is no dimension and would not expand in time


class FoldError(ValueError):
    """A static formula beyond the bounds."""


def _magnitude(value: sp.Expr) -> float:
    """log10 |value| of a SymPy number (-inf for 0), without evaluating it exactly."""
    if value == 0:
        return -math.inf
    if value.is_Integer:
        return (len(str(abs(int(value)))) - 1) if abs(int(value)) > 10 ** 15 else math.log10(
            abs(int(value)))
    try:
        return math.log10(abs(float(value)))
    except (OverflowError, TypeError, ValueError):
        return math.inf


def check(value: sp.Expr) -> sp.Expr:
    if value.is_number and _magnitude(value) > MAX_DIGITS:
        raise FoldError(f"the constant has more than {MAX_DIGITS} digits")
    return value


def fold(op: str, a: sp.Expr, b: sp.Expr) -> sp.Expr:
    """``a op b`` for static formulas, within the bounds."""
    if op == "**":
        if b.is_number:
            if a.is_number:
                mag = _magnitude(a)
                try:
                    e = float(b)
                except (OverflowError, TypeError):
                    e = math.inf
                if mag != -math.inf and abs(e) * abs(mag) > MAX_DIGITS:
                    raise FoldError(f"the power is a number with more than {MAX_DIGITS} digits")
                if a.is_negative and not b.is_integer:
                    raise FoldError("a negative number to a fractional power is not a real number")
                if a == 0 and b.is_negative:
                    raise FoldError("zero to a negative power divides by zero")
            elif abs(float(b)) > MAX_EXPONENT:
                raise FoldError(f"an exponent beyond {MAX_EXPONENT} in a formula of the "
                                "hyper-parameters")
        return check(a**b)
    if op == "/" and b == 0:
        raise FoldError("division by zero")
    result = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if op == "/" else None}[op]
    return check(result)


class Round(sp.Function):
    """Python's round() of a static number (half to even, as fla's formulas compute it)."""

    @classmethod
    def eval(cls, arg):
        if arg.is_Number:
            return sp.Integer(round(float(arg)))
        return None


def apply(fn: str, a: sp.Expr) -> sp.Expr:
    """A builtin on a static formula (exp, log, sqrt, abs, square, round), within the bounds."""
    if fn in ("log", "sqrt") and a.is_number and ((a <= 0) if fn == "log" else (a < 0)):
        raise FoldError(f"{fn} of {a}: outside its domain")
    if fn == "exp" and a.is_number and float(a) > MAX_DIGITS * math.log(10):
        raise FoldError(f"exp({a}) has more than {MAX_DIGITS} digits")
    value = {"exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "abs": sp.Abs, "round": Round,
             "square": lambda v: fold("**", v, sp.Integer(2))}[fn](a)
    return check(value)


def evaluate(expr: sp.Expr, values: Mapping[sp.Symbol, object]) -> float | None:
    """The formula's value in floating point with ``values`` for its symbols; None when it has
    none (an unknown symbol, a complex or non-finite result)."""
    try:
        v = _eval(sp.sympify(expr), values)
    except (OverflowError, ValueError, ZeroDivisionError, TypeError):
        return None
    if isinstance(v, complex) or v is None or not math.isfinite(v):
        return None
    return v


def _eval(e: sp.Expr, values) -> float:
    if e.is_Symbol:
        if e not in values:
            raise ValueError(e)
        v = values[e]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(e)
        return float(v)
    if e.is_Number:
        if e.is_Integer and abs(int(e)) > 10 ** 300:
            raise OverflowError
        return float(e)
    if e.is_Add:
        return math.fsum(_eval(a, values) for a in e.args)
    if e.is_Mul:
        out = 1.0
        for a in e.args:
            out *= _eval(a, values)
        return out
    if e.is_Pow:
        base, exp = _eval(e.args[0], values), _eval(e.args[1], values)
        result = base**exp
        if isinstance(result, complex):
            raise ValueError("complex")
        return float(result)
    fns = {sp.exp: math.exp, sp.log: math.log, sp.Abs: abs, sp.floor: math.floor,
           sp.ceiling: math.ceil, Round: round}
    for f, impl in fns.items():
        if isinstance(e, f):
            return float(impl(_eval(e.args[0], values)))
    if isinstance(e, sp.Max):
        return max(_eval(a, values) for a in e.args)
    if isinstance(e, sp.Min):
        return min(_eval(a, values) for a in e.args)
    if e in (sp.pi, sp.E):
        return float(e)
    raise ValueError(f"cannot evaluate {type(e).__name__}")
