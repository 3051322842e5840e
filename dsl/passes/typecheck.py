"""Types and symbolic shapes of every node; refinements (ranges, unit norm) by interval analysis.

Checks that projections, reshapes, broadcasts, matmuls and state updates agree on shapes as
formulas of the hyper-parameters (so a width that only matches at the defaults is still an
error), that parameter constructors get legal arguments, and that the output has hidden_size
features. A node whose operands failed gets the ERROR type silently, so one mistake is reported
once.
"""

from __future__ import annotations

import math
from dataclasses import replace

import sympy as sp

from linarch.dsl import intervals as iv
from linarch.dsl.builtins import BUILTINS, Family
from linarch.dsl.diagnostics import Reporter
from linarch.dsl.folding import FoldError, evaluate, fold
from linarch.dsl.folding import apply as fold_call
from linarch.dsl.intervals import INF, Interval
from linarch.dsl.ir import Node, Op
from linarch.dsl.params import (
    ACTIVATIONS,
    BIAS_INITS,
    CONV_INITS,
    INITS,
    PADDINGS,
    PARAM_KINDS,
)
from linarch.dsl.types import (
    ERROR,
    Kind,
    ModuleInfo,
    Type,
    broadcast,
    dims_equal,
    numel,
    shapes_equal,
)
from linarch.dsl.unit import Unit

T_SYMBOL = sp.Symbol("T", positive=True, integer=True)


def typecheck(unit: Unit, report: Reporter) -> Unit:
    checker = _Checker(unit, report)
    checker.run()
    return replace(unit, types=checker.types, symbols=checker.symbols, defaults=checker.defaults)


def static_range(value: sp.Expr, defaults) -> Interval:
    if value.is_number:
        try:
            v = float(value)
        except TypeError:
            return Interval()
        return Interval(v, v) if math.isfinite(v) else Interval()
    if value.is_positive:
        return Interval(iv.TINY, INF)
    if value.is_nonnegative:
        return Interval(0.0, INF)
    if value.is_negative or value.is_nonpositive:
        return Interval(-INF, 0.0)
    return Interval()


class _Checker:
    def __init__(self, unit: Unit, report: Reporter) -> None:
        self.unit = unit
        self.m = unit.module
        self.report = report
        self.types: dict[int, Type] = {}
        self.symbols: dict[str, sp.Symbol] = {}
        self.defaults: dict[sp.Symbol, object] = {T_SYMBOL: 2048}
        self.bad_dims: set[sp.Expr] = set()  # dimension formulas already reported (LA114)
        self.ranges: dict[sp.Symbol, Interval] = {}  # declared ranges of hyper-parameters
        self._subs: dict | None = None  # the defaults as sympy numbers (built on first use)
        self.names: dict[sp.Expr, sp.Symbol] = {}  # value -> binding name, for messages

    def pretty(self, e: sp.Expr) -> sp.Expr:
        """A formula in the program's own names (``H*dk`` rather than ``head_dim*num_heads``)."""
        if not self.names:
            return e
        pairs = sorted(self.names.items(), key=lambda kv: -sp.count_ops(kv[0]))
        try:
            return sp.sympify(e).subs(pairs, simultaneous=True)
        except (TypeError, ValueError, AttributeError, sp.SympifyError):
            return e

    def fmt_shape(self, shape) -> str:
        return "[" + ", ".join(str(self.pretty(d)) for d in shape) + "]"

    def err(self, code: str, message: str, node: Node, hint: str | None = None) -> Type:
        self.report(code, message, node.span, hint)
        return ERROR

    def run(self) -> None:
        for i, node in self.m.nodes():
            try:
                self.types[i] = self.visit(i, node)
            except _Poison:
                self.types[i] = ERROR
            ty = self.types[i]
            if (node.name and node.op not in (Op.HPARAM, Op.CONST, Op.PARAM)
                    and ty.is_scalar_static and not ty.value.is_number):
                self.names.setdefault(ty.value, sp.Symbol(node.name))
        self._check_unused()

    def t(self, i: int) -> Type:
        ty = self.types[i]
        if ty.is_error:
            raise _Poison
        return ty

    def at_defaults(self, e: sp.Expr) -> float | None:
        """A formula's value at the defaults, in floating point (bounded; 2 ** T is no size)."""
        return evaluate(e, self.defaults)

    # ------------------------------------------------------------------ nodes
    def visit(self, i: int, n: Node) -> Type:
        op = n.op
        if op is Op.INPUT:
            # x has hidden_size features; without a valid hidden_size (reported by lowering or
            # _hparam) everything computed from x is poisoned instead of misreported
            hs = [h.attr("default") for _, h in self.m.hparams() if h.name == "hidden_size"]
            if len(hs) != 1 or isinstance(hs[0], bool) or not isinstance(hs[0], int) or hs[0] <= 0:
                return ERROR
            return Type(Kind.TOKEN, (sp.Symbol("hidden_size", positive=True, integer=True),))
        if op is Op.HPARAM:
            return self._hparam(n)
        if op is Op.SEQLEN:
            return Type(Kind.STATIC, value=T_SYMBOL, range=Interval(1.0, INF))
        if op is Op.CONST:
            if n.attr("error"):
                return ERROR
            v = n.attr("value")
            if isinstance(v, bool):
                return Type(Kind.BOOL, literal=v)
            if isinstance(v, str):
                return Type(Kind.STRING, literal=v)
            value = sp.Integer(v) if isinstance(v, int) else sp.Float(v)
            return Type(Kind.STATIC, value=value, range=Interval(float(v), float(v)))
        if op is Op.AXIS:
            return Type(Kind.AXIS, literal=n.attr("axis"))
        if op is Op.IDENTITY:
            return Type(Kind.IDENTITY, range=Interval(0.0, 1.0))
        if op is Op.ALIAS:
            return self.t(n.args[0])
        if op is Op.NEG:
            a = self.t(n.args[0])
            if a.is_scalar_static:
                return a.with_(value=-a.value, range=-a.range)
            if a.kind is Kind.IDENTITY:
                return a.with_(range=Interval(-1.0, 0.0))
            self._tensor(a, n, "negate")
            return a.with_(range=-a.range, unit=False)
        if op is Op.BINARY:
            return self._binary(n)
        if op is Op.CALL:
            return self._call(n)
        if op is Op.RESHAPE:
            return self._reshape(n)
        if op is Op.PARAM:
            return self._param(n)
        if op is Op.APPLY:
            return self._apply(n)
        if op is Op.STATE:
            dims = tuple(self._dim(a, n, "state dimension") for a in n.args)
            return Type(Kind.TOKEN, dims)
        if op is Op.UPDATE:
            state = self.t(n.args[0])
            value = self.t(n.args[1])
            if value.kind is not Kind.TOKEN:
                return self.err("LA303", f"the update of `{n.name}` does not depend on the input",
                                n, "a state update writes a per-token value, e.g. outer(v, k)")
            if not shapes_equal(state.shape, value.shape):
                return self.err(
                    "LA103",
                    f"state `{n.name}` is {self.fmt_shape(state.shape)} but its update is "
                    f"{self.fmt_shape(value.shape)}", n,
                    "the update must have the declared shape; outer(v, k) is [.., dv, dk]")
            return Type(Kind.TOKEN, state.shape, range=value.range)
        if op is Op.RETURN:
            return self._return(n)
        if op is Op.LOSS:
            v = self.t(n.args[0])
            if not v.is_tensor:
                return self.err("LA107", "an auxiliary loss must be a number per token", n)
            return Type(Kind.EFFECT)
        raise AssertionError(op)

    def _hparam(self, n: Node) -> Type:
        v = n.attr("default")
        if n.args:  # a derived default: a static formula of earlier hyper-parameters
            t = self.t(n.args[0])
            v = self.at_defaults(t.value) if t.is_scalar_static else None
            if v is None:
                return self.err("LA113", f"the default of `{n.name}` must be a static number "
                                "computed from the hyper-parameters before it", n,
                                "e.g. num_heads = hidden_size / head_dim")
            v = int(v) if float(v).is_integer() else v
        if isinstance(v, bool):
            return Type(Kind.BOOL, literal=v)
        if isinstance(v, str):
            return Type(Kind.STRING, literal=v)
        integer = isinstance(v, int)
        declared = n.attr("range")
        if declared is not None:
            lo, hi = declared
            if any(isinstance(b, (bool, str)) for b in declared) or not lo <= v <= hi:
                return self.err("LA113", f"`{n.name} = {v}` is not in its declared range "
                                f"[{lo}, {hi}]", n, "declare numbers lo <= default <= hi")
            sym = sp.Symbol(n.name, real=True, integer=integer, positive=lo > 0 or None,
                            nonnegative=lo >= 0 or None)
            self.ranges[sym] = Interval(float(lo), float(hi))
        else:  # a positive default declares (0, inf]: the constructor refuses other values
            sym = sp.Symbol(n.name, positive=True, integer=integer) if v > 0 else sp.Symbol(
                n.name, real=True, integer=integer)
        self.symbols[n.name] = sym
        self.defaults[sym] = v
        if n.name in ("hidden_size", "num_heads") and not (integer and v > 0):
            return self.err("LA113", f"`{n.name}` must default to a positive integer", n)
        return Type(Kind.STATIC, value=sym, range=self.static_range(sym))

    def _fold(self, n: Node, compute) -> sp.Expr:
        try:
            value = compute()
        except FoldError as exc:
            self.err("LA118", f"this static formula cannot be computed: {exc}", n,
                     "keep static numbers to what a layer needs (widths, rates, constants)")
            raise _Poison from None
        if self.at_defaults(value) is None:
            self.err("LA118", f"this static formula has no finite value at the defaults "
                     f"({self.pretty(value)})", n, "check the hyper-parameter defaults: a "
                     "division by zero, or log or sqrt of a number out of its domain")
            raise _Poison
        return value

    def static_range(self, value: sp.Expr) -> Interval:
        """A static formula's range over the declared ranges of its hyper-parameters."""
        if value in self.ranges:
            return self.ranges[value]
        return static_range(value, self.defaults)

    def _dim(self, i: int, n: Node, what: str) -> sp.Expr:
        t = self.t(i)
        if not t.is_scalar_static:
            self.err("LA107", f"{what} must be a static number, got {t.describe()}", n)
            raise _Poison
        value = sp.nsimplify(t.value) if t.value.is_Float else t.value
        num = self.at_defaults(value)
        if num is None or num <= 0 or abs(num - round(num)) > 1e-9:
            if value in self.bad_dims:
                raise _Poison  # one formula, one diagnostic (at its first use)
            self.bad_dims.add(value)
            shown = f"{num:g}" if num is not None else "not a number"
            self.err("LA114", f"{what} `{self.pretty(value)}` is {shown} at the defaults, not a "
                     "positive integer", n, "check the hyper-parameter defaults and the formula")
            raise _Poison
        return value

    def _static_int(self, i: int, n: Node, what: str, allow_zero: bool = False) -> sp.Expr:
        t = self.t(i)
        if not t.is_scalar_static:
            self.err("LA107", f"{what} must be a static number", n)
            raise _Poison
        num = self.at_defaults(t.value)
        if num is None or num < (0 if allow_zero else 1) or abs(num - round(num)) > 1e-9:
            self.err("LA114", f"{what} `{self.pretty(t.value)}` is not an integer at the "
                     "defaults", n)
            raise _Poison
        return t.value

    def _tensor(self, t: Type, n: Node, what: str) -> None:
        if t.kind is Kind.MODULE:
            self.err("LA107", f"cannot {what} a parameter module; call it on a value", n,
                     "e.g. `q_proj(x)`")
            raise _Poison
        if not t.is_tensor:
            self.err("LA107", f"cannot {what} a {t.kind.value}", n)
            raise _Poison

    # ------------------------------------------------------------------ arithmetic
    def _binary(self, n: Node) -> Type:
        a, b = self.t(n.args[0]), self.t(n.args[1])
        op = n.attr("op")
        if op == "@":
            return self._matmul(a, b, n)
        if a.is_scalar_static and b.is_scalar_static:
            value = self._fold(n, lambda: fold(op, a.value, b.value))
            rng = self.static_range(value)
            by_parts = _interval_op(op, a, b)
            if by_parts is not None:  # both are sound: keep what both allow
                rng = Interval(max(rng.lo, by_parts.lo), min(rng.hi, by_parts.hi))
            return Type(Kind.STATIC, value=value, range=rng)
        if a.kind is Kind.IDENTITY or b.kind is Kind.IDENTITY:
            return self._with_identity(a, b, op, n)
        self._tensor(a, n, f"use `{op}` on")
        self._tensor(b, n, f"use `{op}` on")
        shape = broadcast(a.shape, b.shape)
        if shape is None:
            return self.err("LA103", f"cannot combine {self.fmt_shape(a.shape)} and "
                            f"{self.fmt_shape(b.shape)} with `{op}`", n,
                            "per-head values broadcast over trailing axes ([H] with [H, d]); "
                            "reshape with `as [..]` or use diag()/outer()")
        kind = Kind.TOKEN if Kind.TOKEN in (a.kind, b.kind) else Kind.STATIC
        rng = _interval_op(op, a, b)
        if rng is None:  # a fractional power of a value that may be negative
            self._domain("a fractional power", a.range, n)
            rng = Interval()
        return Type(kind, shape, range=rng)

    def _with_identity(self, a: Type, b: Type, op: str, n: Node) -> Type:
        other = b if a.kind is Kind.IDENTITY else a
        if other.kind is Kind.IDENTITY:
            return Type(Kind.IDENTITY)
        self._tensor(other, n, f"use `{op}` with I on")
        if op in ("+", "-"):
            if len(other.shape) < 2 or not dims_equal(other.shape[-1], other.shape[-2]):
                return self.err("LA103", f"I {op} X needs a square X, got "
                                f"{self.fmt_shape(other.shape)}", n,
                                "outer(k, k) and diag(a) are square")
            return Type(other.kind, other.shape)
        if op == "*" and (not other.shape or len(other.shape) == 1):
            return Type(Kind.IDENTITY)
        return self.err("LA107", f"`I {op} ...` is not a transition", n,
                        "write I - beta * outer(k, k) or alpha * I")

    def _matmul(self, a: Type, b: Type, n: Node) -> Type:
        if a.kind is Kind.IDENTITY:
            return b
        if b.kind is Kind.IDENTITY:
            return a
        self._tensor(a, n, "multiply")
        self._tensor(b, n, "multiply")
        kind = Kind.TOKEN if Kind.TOKEN in (a.kind, b.kind) else Kind.STATIC
        if len(a.shape) < 2:
            return self.err("LA103", f"the left side of `@` must be a matrix, got "
                            f"{self.fmt_shape(a.shape)}", n, "states are [H, dv, dk]: write S @ q")
        if not b.shape:
            return self.err("LA103", "the right side of `@` must be a vector or a matrix, got a "
                            "scalar", n, "scale with `*`, e.g. S @ q * dk ** -0.5")
        if len(b.shape) < len(a.shape):  # matrix @ vector (the vector may omit leading axes)
            if not dims_equal(a.shape[-1], b.shape[-1]) or broadcast(a.shape[:-2], b.shape[:-1]) \
                    is None:
                return self.err("LA103", f"cannot multiply {self.fmt_shape(a.shape)} by vector "
                                f"{self.fmt_shape(b.shape)}", n,
                                "the last axis of the matrix must match the vector")
            return Type(kind, a.shape[:-1])
        if len(b.shape) == len(a.shape):
            if not dims_equal(a.shape[-1], b.shape[-2]) or not shapes_equal(a.shape[:-2],
                                                                             b.shape[:-2]):
                return self.err("LA103", f"cannot multiply {self.fmt_shape(a.shape)} by "
                                f"{self.fmt_shape(b.shape)}", n, "inner dimensions must match")
            return Type(kind, a.shape[:-1] + b.shape[-1:])
        return self.err("LA103", f"cannot multiply {self.fmt_shape(a.shape)} by "
                        f"{self.fmt_shape(b.shape)}", n)

    def _reshape(self, n: Node) -> Type:
        v = self.t(n.args[0])
        self._tensor(v, n, "reshape")
        dims = tuple(self._dim(a, n, "reshape dimension") for a in n.args[1:])
        have, want = numel(v.shape), numel(dims)
        if not dims_equal(have, want):
            at_h, at_w = self.at_defaults(have), self.at_defaults(want)
            numbers = f" ({at_h:g} vs {at_w:g} at the defaults)" if at_h and at_w else ""
            if at_h and at_h == at_w:
                numbers = f" (both {at_h:g} at the defaults, but not for every hyper-parameter)"
            return self.err(
                "LA104",
                f"a value with {self.fmt_shape(v.shape)} = {self.pretty(have)} features cannot be "
                f"viewed as {self.fmt_shape(dims)} = {self.pretty(want)}{numbers}", n,
                "make the projection's output width equal to the product of the head shape, "
                "e.g. linear(hidden_size -> H * dk) viewed as [H, dk]")
        return Type(v.kind, dims, range=v.range)

    # ------------------------------------------------------------------ builtins
    def _call(self, n: Node) -> Type:
        fn = BUILTINS[n.attr("fn")]
        pos = n.positional()
        if not fn.min_args <= len(pos) <= fn.max_args:
            want = (str(fn.min_args) if fn.min_args == fn.max_args
                    else f"{fn.min_args} to {fn.max_args}")
            return self.err("LA105", f"`{fn.name}` takes {want} argument(s), got {len(pos)}", n,
                            fn.doc or None)
        for k, _ in enumerate(n.args):
            key = n.key(k)
            if key and key not in fn.keywords:
                allowed = ", ".join(fn.keywords) or "none"
                return self.err("LA105", f"`{fn.name}` has no keyword `{key}`", n,
                                f"keywords of {fn.name}: {allowed}")
        args = [self.t(a) for a in pos]
        if fn.family is Family.ELEMENTWISE:
            a = args[0]
            if a.is_scalar_static and fn.name in FOLDED:
                inside = fn.name not in ("log", "sqrt") or self._domain(fn.name, a.range, n)
                value = self._fold(n, lambda: fold_call(fn.name, a.value))
                rng = self.static_range(value)
                if inside and fn.range:
                    by_parts = fn.range(a.range)
                    rng = Interval(max(rng.lo, by_parts.lo), min(rng.hi, by_parts.hi))
                return Type(Kind.STATIC, value=value, range=rng)
            self._tensor(a, n, f"apply {fn.name} to")
            if fn.name in ("log", "sqrt") and not self._domain(fn.name, a.range, n):
                return Type(a.kind, a.shape)
            return Type(a.kind, a.shape, range=fn.range(a.range) if fn.range else Interval())
        if fn.family is Family.FEATURE:
            return self._feature(fn, n, args[0])
        if fn.family is Family.COMBINE:
            return self._combine(fn, n, args)
        if fn.family is Family.STRUCTURE:
            return self._structure(fn, n, args)
        if fn.family is Family.POSITION:
            return self._position(fn, n, args)
        return self._time(fn, n, args)

    def _position(self, fn, n: Node, args: list[Type]) -> Type:
        a = args[0]
        if fn.name == "arange":
            length = self._dim(n.args[0], n, "arange length")
            top = self.at_defaults(length)
            hi = INF if not length.is_number else float(top) - 1
            return Type(Kind.STATIC, (length,), range=Interval(0.0, hi))
        self._tensor(a, n, "apply rotary to")
        if a.kind is not Kind.TOKEN or not a.shape:
            return self.err("LA107", "rotary needs a per-token value with features", n)
        return Type(Kind.TOKEN, a.shape)

    def _over(self, n: Node) -> object:
        i = n.keyword("over")
        if i is None:
            return -1
        t = self.t(i)
        if t.kind is Kind.AXIS:
            return t.literal
        if t.is_scalar_static and t.value.is_Integer:
            return int(t.value)
        self.err("LA105", "`over` is `time`, `batch` or a feature axis number", n)
        raise _Poison

    def _domain(self, what: str, r: Interval, n: Node) -> bool:
        """Whether ``r`` lies in the domain [0, inf] of log, sqrt or a fractional power (else NaN):
        never (LA116, an error), not provably (LA117, a warning; the result is unbounded)."""
        if r.lo >= 0:
            return True
        if r.hi <= 0:  # negative, or zero only at one end: NaN everywhere it varies
            self.err("LA116", f"{what} of a value in {r}: always outside its domain (NaN)", n,
                     "apply it to a non-negative value: softplus(.), abs(.), sigmoid(.)")
            raise _Poison
        self.report("LA117", f"{what} of a value in {r}: NaN where the value is negative", n.span,
                    "apply it to a non-negative value: softplus(.), abs(.), sigmoid(.)")
        return False

    def _feature(self, fn, n: Node, a: Type) -> Type:
        self._tensor(a, n, f"apply {fn.name} to")
        if not a.shape:
            return self.err("LA103", f"`{fn.name}` needs a feature axis", n)
        over = self._over(n) if "over" in fn.keywords else -1
        rng = fn.range(a.range) if fn.range else (a.range if fn.name == "mean" else Interval())
        if fn.name == "sum":  # of one or more terms: a sign every term shares, the sum has
            lo, hi = a.range.lo, a.range.hi
            rng = Interval(lo if lo >= 0 else -INF, hi if hi <= 0 else INF)
        if over in ("time", "batch"):
            return Type(a.kind, a.shape, range=rng)
        axis = over if over >= 0 else len(a.shape) + over
        if not 0 <= axis < len(a.shape):
            return self.err("LA105", f"axis {over} is out of range for "
                            f"{self.fmt_shape(a.shape)}", n)
        if fn.name in ("sum", "mean", "entropy"):
            shape = a.shape[:axis] + a.shape[axis + 1:]
            return Type(a.kind, shape, range=rng)
        return Type(a.kind, a.shape, range=rng, unit=fn.unit)

    def _combine(self, fn, n: Node, args: list[Type]) -> Type:
        if fn.name == "clamp":
            x, lo, hi = args
            self._tensor(x, n, "clamp")
            if not (lo.is_scalar_static and hi.is_scalar_static):
                return self.err("LA105", "clamp bounds must be static numbers", n)
            return Type(x.kind, x.shape, range=iv.clamp(x.range, lo.range, hi.range))
        if fn.name in ("minimum", "maximum") and all(a.is_scalar_static for a in args):
            value = self._fold(n, lambda: (sp.Min if fn.name == "minimum" else sp.Max)(
                args[0].value, args[1].value))
            pick = min if fn.name == "minimum" else max
            rng = Interval(pick(args[0].range.lo, args[1].range.lo),
                           pick(args[0].range.hi, args[1].range.hi))
            return Type(Kind.STATIC, value=value, range=rng)
        for a in args:
            self._tensor(a, n, f"apply {fn.name} to")
        shape = args[0].shape
        for a in args[1:]:
            shape = broadcast(shape, a.shape)
            if shape is None:
                return self.err("LA103", f"`{fn.name}` operands have incompatible shapes "
                                f"{', '.join(self.fmt_shape(a.shape) for a in args)}", n)
        kind = Kind.TOKEN if any(a.kind is Kind.TOKEN for a in args) else Kind.STATIC
        if fn.name == "lerp":
            a, b, w = (x.range for x in args)
            rng = a + (b - a) * w
            if w.within(0.0, 1.0):  # between a and b: a + (b - a) w = (1 - w) a + w b
                hull = a.join(b)
                rng = Interval(max(rng.lo, hull.lo), min(rng.hi, hull.hi))
        elif fn.name == "minimum":
            rng = Interval(min(args[0].range.lo, args[1].range.lo),
                           min(args[0].range.hi, args[1].range.hi))
        else:
            rng = Interval(max(args[0].range.lo, args[1].range.lo),
                           max(args[0].range.hi, args[1].range.hi))
        return Type(kind, shape, range=rng)

    def _structure(self, fn, n: Node, args: list[Type]) -> Type:
        if fn.name == "slice":
            x = args[0]
            self._tensor(x, n, "slice")
            if not x.shape:
                return self.err("LA103", "`slice` needs a value with features, got a scalar", n)
            start = self._static_int(n.args[1], n, "slice start", allow_zero=True)
            length = self._dim(n.args[2], n, "slice length")
            end, size = self.at_defaults(start + length), self.at_defaults(x.shape[-1])
            if end is None or size is None or end > size + 1e-9:
                return self.err("LA105", f"slice [{start}, {start + length}) is outside the "
                                f"{x.shape[-1]} features", n)
            return Type(x.kind, x.shape[:-1] + (length,), range=x.range)
        for a in args:
            self._tensor(a, n, f"apply {fn.name} to")
            if not a.shape:
                return self.err("LA103", f"`{fn.name}` needs vectors, got a scalar", n)
        kind = Kind.TOKEN if any(a.kind is Kind.TOKEN for a in args) else Kind.STATIC
        name = fn.name
        if name == "outer":
            a, b = args
            lead = broadcast(a.shape[:-1], b.shape[:-1])
            if lead is None:
                return self.err("LA103", f"outer of {self.fmt_shape(a.shape)} and "
                                f"{self.fmt_shape(b.shape)}: leading axes differ", n)
            return Type(kind, lead + (a.shape[-1], b.shape[-1]), range=a.range * b.range)
        if name == "diag":
            a = args[0]
            return Type(kind, a.shape + (a.shape[-1],), range=a.range.join(Interval(0.0, 0.0)))
        if name == "dot":
            a, b = args
            shape = broadcast(a.shape, b.shape)
            if shape is None or not dims_equal(a.shape[-1], b.shape[-1]):
                return self.err("LA103", f"dot of {self.fmt_shape(a.shape)} and "
                                f"{self.fmt_shape(b.shape)}", n,
                                "both operands need the same last axis")
            return Type(kind, shape[:-1])
        if name == "stack":
            first = args[0]
            for a in args[1:]:
                if not shapes_equal(a.shape, first.shape):
                    return self.err("LA103", "stacked paths differ: "
                                    f"{self.fmt_shape(first.shape)} vs {self.fmt_shape(a.shape)}",
                                    n, "every path needs the same shape")
            rng = first.range
            for a in args[1:]:
                rng = rng.join(a.range)
            shape = first.shape[:-1] + (sp.Integer(len(args)), first.shape[-1])
            return Type(kind, shape, range=rng)
        if name == "mix":
            paths, w = args
            if len(paths.shape) < 2 or not shapes_equal(paths.shape[:-1], w.shape):
                return self.err("LA103", f"mix(paths {self.fmt_shape(paths.shape)}, weights "
                                f"{self.fmt_shape(w.shape)}): weights need the paths' shape "
                                "without its last axis", n,
                                "stack(...) gives [H, P, d]; weights [H, P]")
            return Type(kind, paths.shape[:-1][:-1] + paths.shape[-1:])
        if name == "concat":
            lead = args[0].shape[:-1]
            for a in args[1:]:
                if not shapes_equal(a.shape[:-1], lead):
                    return self.err("LA103", "concat operands differ before the last axis", n)
            return Type(kind, lead + (sp.Add(*[a.shape[-1] for a in args]),))
        raise AssertionError(name)

    def _time(self, fn, n: Node, args: list[Type]) -> Type:
        for a in args:
            self._tensor(a, n, f"apply {fn.name} to")
        if fn.name == "attention":
            q, k, v = args
            if not (shapes_equal(q.shape, k.shape) and len(q.shape) >= 1
                    and shapes_equal(q.shape[:-1], v.shape[:-1])):
                return self.err("LA103", f"attention(q {self.fmt_shape(q.shape)}, k "
                                f"{self.fmt_shape(k.shape)}, v {self.fmt_shape(v.shape)}): q and k "
                                "need one shape and v the same heads", n)
            return Type(Kind.TOKEN, v.shape)
        if fn.name == "cumsum" or fn.name == "reverse_cumsum":
            over = self._over(n)
            if over != "time":
                return self.err("LA105", f"`{fn.name}` runs over time: write `over = time`", n)
        a = args[0]
        if fn.name == "token_shift":  # the value at t - 1, zeros at the first token
            return Type(Kind.TOKEN, a.shape, range=a.range.join(Interval(0.0, 0.0)))
        if fn.name == "fft_conv":
            shape = broadcast(a.shape, args[1].shape)
            if shape is None:
                return self.err("LA103", f"fft_conv of {self.fmt_shape(a.shape)} and "
                                f"{self.fmt_shape(args[1].shape)}: the filter must broadcast onto "
                                "the value", n, "give the filter the value's shape")
            return Type(Kind.TOKEN, shape)
        rng = Interval()
        if fn.name == "cumsum":  # a running sum of signed terms keeps their sign
            rng = Interval(0.0, INF) if a.range.lo >= 0 else (
                Interval(-INF, 0.0) if a.range.hi <= 0 else Interval())
        return Type(Kind.TOKEN, a.shape, range=rng)

    # ------------------------------------------------------------------ parameters
    def _param(self, n: Node) -> Type:
        kind = PARAM_KINDS[n.attr("kind")]
        chain = n.attr("chain", 0)
        positional = n.positional()
        if kind.chain and chain < 2:
            return self.err("LA105", f"`{kind.name}` takes its widths as `in -> out`", n,
                            f"e.g. {kind.name}(hidden_size -> H * dk)")
        if not kind.chain and chain:
            return self.err("LA105", f"`{kind.name}` takes no `->` widths", n, kind.doc)
        if not kind.min_args <= len(positional) <= kind.max_args:
            return self.err("LA105", f"`{kind.name}` takes {kind.min_args}"
                            f"{'' if kind.min_args == kind.max_args else f'..{kind.max_args}'} "
                            f"positional argument(s), got {len(positional)}", n, kind.doc)
        widths = tuple(self._dim(a, n, f"{kind.name} width") for a in positional)
        allowed = dict(kind.keywords)
        window = None
        for k, a in enumerate(n.args):
            key = n.key(k)
            if not key:
                continue
            if key not in allowed:
                return self.err("LA105", f"`{kind.name}` has no keyword `{key}`", n,
                                f"keywords: {', '.join(allowed) or 'none'}")
            t = self.t(a)
            self._check_keyword(kind.name, key, t, n)
            if key in ("act", "padding", "init", "bias_init") and \
                    self.m.node(a).op is not Op.CONST:
                return self.err("LA105", f"`{key}` of {kind.name} selects code: write it as a "
                                "string literal", n, f'e.g. {key} = "{kind.default(key)}"')
            if key == "width":
                window = self._dim(a, n, "convolution width")
        if kind.name == "linear" and not self._bias_init_fits(n):
            raise _Poison
        if kind.name == "weight" and not self._ramp_fits(n, "init", "", "value"):
            raise _Poison
        if kind.name == "causal_conv" and window is None:
            window = sp.Integer(kind.default("width"))
        if not kind.applies:
            logical = widths
            while len(logical) > 1 and logical[0] == 1:
                logical = logical[1:]  # leading 1s are storage only (fla's [1, 1, d] mixes)
            return Type(Kind.STATIC, logical, range=self._weight_range(n))
        return Type(Kind.MODULE, module=ModuleInfo(kind.name, widths, window))

    def _bias_init_fits(self, n: Node) -> bool:
        """A bias init needs a bias, and a bias value needs the constant init that reads it."""
        def literal(key: str):
            a = n.keyword(key)
            return None if a is None else self.t(a).literal

        init = literal("bias_init") or "default"
        if init != "default" and literal("bias") is not True:
            self.err("LA105", f"`bias_init = \"{init}\"` needs a bias", n,
                     "add `bias = true`, or drop `bias_init`")
            return False
        if n.keyword("bias_value") is not None and init not in ("constant", "ramp"):
            self.err("LA105", "`bias_value` is read only with `bias_init = \"constant\"` or "
                     "`\"ramp\"`", n, "add `bias_init = \"constant\"`, or drop `bias_value`")
            return False
        return self._ramp_fits(n, "bias_init", "bias_", "bias_value")

    def _ramp_fits(self, n: Node, init_key: str, prefix: str, start_key: str) -> bool:
        """`end` and `power` belong to a ramp init, and a ramp's power must be positive (the
        first channel's (0 / N) ** power)."""
        a = n.keyword(init_key)
        init = None if a is None else self.t(a).literal
        for key in (f"{prefix}end", f"{prefix}power"):
            if n.keyword(key) is not None and init != "ramp":
                self.err("LA105", f"`{key}` is read only with `{init_key} = \"ramp\"`", n,
                         f"add `{init_key} = \"ramp\"` (from `{start_key}` to `{prefix}end`), "
                         f"or drop `{key}`")
                return False
        power = n.keyword(f"{prefix}power")
        if power is not None and not self.t(power).range.lo > 0:
            self.err("LA105", f"`{prefix}power` of a ramp must be provably positive, here "
                     f"{self.t(power).range}", n, f"e.g. `{prefix}power = 1.0` (a straight line)")
            return False
        return True

    def _weight_range(self, n: Node) -> Interval:
        """Learned weights can take any value; only their use (exp, sigmoid ...) bounds them."""
        return Interval()

    def _check_keyword(self, kind: str, key: str, t: Type, n: Node) -> None:
        expect = {"bias": Kind.BOOL, "affine": Kind.BOOL, "act": Kind.STRING,
                  "padding": Kind.STRING, "init": Kind.STRING,
                  "bias_init": Kind.STRING}.get(key)
        if expect is not None and t.kind is not expect:
            self.err("LA105", f"`{key}` of {kind} must be a {expect.value}", n)
            raise _Poison
        if key == "act" and t.literal not in ACTIVATIONS:
            self.err("LA105", f"unknown activation \"{t.literal}\"", n,
                     f"activations: {', '.join(ACTIVATIONS)}")
            raise _Poison
        if key == "padding" and t.literal not in PADDINGS:
            self.err("LA105", f"unknown padding \"{t.literal}\"", n, "use \"causal\"")
            raise _Poison
        if key == "init" and t.literal not in INITS + ("default",):
            self.err("LA105", f"unknown init \"{t.literal}\"", n, f"inits: {', '.join(INITS)}")
            raise _Poison
        if key == "init" and kind == "causal_conv" and t.literal not in CONV_INITS:
            self.err("LA105", f"a causal_conv cannot start as \"{t.literal}\"", n,
                     f"a causal_conv's inits: {', '.join(CONV_INITS)}")
            raise _Poison
        if key == "bias_init" and t.literal not in BIAS_INITS:
            self.err("LA105", f"unknown bias init \"{t.literal}\"", n,
                     f"a linear's bias inits: {', '.join(BIAS_INITS)}")
            raise _Poison
        if key in ("eps", "value", "bias_value", "width", "end", "power", "bias_end",
                   "bias_power") and not t.is_scalar_static:
            self.err("LA105", f"`{key}` of {kind} must be a static number", n)
            raise _Poison

    def _apply(self, n: Node) -> Type:
        p = self.t(n.args[0])
        pnode = self.m.node(n.args[0])
        if p.kind is not Kind.MODULE:
            return self.err("LA107", f"`{pnode.name}` is a weight, not a module to call", n,
                            f"use `{pnode.name}` as a value")
        info = p.module
        inputs = [self.t(a) for a in n.args[1:]]
        if len(inputs) != 1 or any(n.key(k) for k in range(1, len(n.args))):
            return self.err("LA105", f"`{pnode.name}` takes one input", n)
        x = inputs[0]
        self._tensor(x, n, f"apply {pnode.name} to")
        if not x.shape:
            return self.err("LA103", f"`{pnode.name}` needs a value with features", n)
        width_in = info.widths[0] if info.kind != "groupnorm" else info.widths[1]
        # convolutions and group norms act on all features of a token, whatever their shape
        whole = info.kind in ("groupnorm", "causal_conv")
        have = numel(x.shape) if whole else x.shape[-1]
        if not dims_equal(have, width_in):
            return self.err(
                "LA103",
                f"`{pnode.name}` expects {self.pretty(width_in)} input features but gets "
                f"{self.pretty(have)} ({self.fmt_shape(x.shape)})", n,
                f"declare `{pnode.name}` with input width {self.pretty(have)}, or pass a value "
                f"with {self.pretty(width_in)} features")
        if info.kind in ("linear", "mlp"):
            return Type(x.kind, x.shape[:-1] + (info.widths[-1],))
        if info.kind == "causal_conv" and x.kind is not Kind.TOKEN:
            return self.err("LA107", "a convolution over time needs a per-token value", n)
        return Type(x.kind, x.shape)

    def _return(self, n: Node) -> Type:
        v = self.t(n.args[0])
        hs = self.symbols.get("hidden_size")
        if hs is None:
            return self.err("LA113", "the mixer needs a `hidden_size` hyper-parameter", n,
                            "add `hidden_size = 1024` to the header")
        if v.kind is not Kind.TOKEN or not shapes_equal(v.shape, (hs,)):
            what = (f"{v.kind.value}{self.fmt_shape(v.shape)}" if v.is_tensor and v.value is None
                    else v.describe())
            return self.err("LA111", f"the output is {what}, not token[hidden_size]", n,
                            "end with an output projection, e.g. o_proj(o) with "
                            "o_proj : linear(H * dv -> hidden_size)")
        return Type(Kind.EFFECT)

    def _check_unused(self) -> None:
        if self.report.has_errors:
            return  # a parameter whose use failed to check is not unused; fix the errors first
        for i, node in self.m.nodes(Op.PARAM):
            if not self.m.users(i):
                self.report("LA112", f"parameter `{node.name}` is never used", node.span,
                            "remove it, or use it (unused weights still load from a checkpoint)")


class _Poison(Exception):
    pass


FOLDED = ("exp", "log", "sqrt", "abs", "square", "round")  # folded on static numbers


def _interval_op(op: str, a: Type, b: Type) -> Interval | None:
    """The range of ``a op b``; None for a power that may not be a real number."""
    ra, rb = a.range, b.range
    if op == "+":
        return ra + rb
    if op == "-":
        return ra - rb
    if op == "*":
        return ra * rb
    if op == "/":
        return ra / rb
    integer = None
    if b.is_scalar_static and b.value.is_Integer:
        integer = int(b.value)
    return iv.power(ra, rb, integer)


__all__ = ["typecheck", "T_SYMBOL", "iv"]
