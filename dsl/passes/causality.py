"""Causality by abstract interpretation: what each value at token t may depend on.

The lattice: STATIC (no token) < POINTWISE (token t) < WINDOW(w) (tokens t-w+1..t) < PREFIX
(tokens 1..t). Every primitive maps its operands' dependences to its own; anything that would
read a later token (a reduction over time, a reverse scan, a conv padded on the right, a global
convolution or attention without a causal mask) or another example of the batch is rejected at
the node that does it. The argument is kept per node so ``linarch show`` can print it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

import sympy as sp

from linarch.dsl.builtins import BUILTINS, Family
from linarch.dsl.diagnostics import Reporter
from linarch.dsl.ir import Node, Op
from linarch.dsl.passes.typecheck import T_SYMBOL
from linarch.dsl.types import Kind
from linarch.dsl.unit import Unit


class Reach(IntEnum):
    STATIC = 0
    POINTWISE = 1
    WINDOW = 2
    PREFIX = 3


@dataclass(frozen=True)
class Dep:
    reach: Reach
    window: int = 1  # tokens read, for WINDOW
    why: str = ""

    def __str__(self) -> str:
        if self.reach is Reach.WINDOW:
            return f"window {self.window}"
        return self.reach.name.lower()


STATIC = Dep(Reach.STATIC)
POINT = Dep(Reach.POINTWISE)


def join(deps: list[Dep]) -> Dep:
    best = STATIC
    for d in deps:
        wider = d.reach == best.reach == Reach.WINDOW and d.window > best.window
        if d.reach > best.reach or wider:
            best = d
    return best


def widen(d: Dep, window: int, why: str) -> Dep:
    """A window of ``window`` tokens applied to a value that already reads ``d``."""
    if d.reach is Reach.PREFIX:
        return d
    if d.reach is Reach.STATIC:
        return d
    base = d.window if d.reach is Reach.WINDOW else 1
    return Dep(Reach.WINDOW, base + window - 1, why)


def causality(unit: Unit, report: Reporter) -> Unit:
    m = unit.module
    deps: dict[int, Dep] = {}
    sized = _sized_by_length(unit)
    for i, n in m.nodes():
        try:
            if i in sized:
                raise _Leak("LA201", sized[i], "T sizes only a recurrent state (in a mixer that "
                            "declares its complexity); use a fixed size, or a state that counts")
            deps[i] = _visit(unit, i, n, deps)
        except _Leak as leak:
            report(leak.code, leak.message, n.span, leak.hint)
            deps[i] = Dep(Reach.PREFIX, why="rejected")
    return replace(unit, time=deps)


_SIZES = {
    Op.PARAM: "sizes a parameter: its weights would grow with the sequence",
    Op.RESHAPE: "sizes a value: its size would grow with the sequence",
}


def _sized_by_length(unit: Unit) -> dict[int, str]:
    """Nodes that T sizes or configures, other than a state's shape and arithmetic on values
    (which `_visit` reports): each with what is wrong. Static formulas of T are followed."""
    m = unit.module
    out: dict[int, str] = {}
    todo = [i for i, _ in m.nodes(Op.SEQLEN)]
    seen: set[int] = set()
    while todo:
        i = todo.pop()
        for u in m.users(i):
            if u in seen:
                continue
            seen.add(u)
            n = m.node(u)
            ty = unit.types.get(u)
            static_number = ty is not None and ty.is_scalar_static
            if n.op is Op.STATE or not static_number and n.op in (Op.BINARY, Op.NEG):
                continue  # a state's size (complexity); arithmetic with T (`_visit`)
            if static_number and n.op in (Op.BINARY, Op.NEG, Op.ALIAS, Op.CALL):
                todo.append(u)
                continue
            what = _SIZES.get(n.op)
            if n.op is Op.CALL:
                what = {"arange": "gives a T-long vector of positions: it reads the length of "
                        "the sequence", "rotary": "sets the rotary base: it reads the length of "
                        "the sequence"}.get(n.attr("fn"), f"configures `{n.attr('fn')}`: it "
                                             "reads the length of the sequence")
            out[u] = "the sequence length T " + (what or "is used where only sizes of states "
                                                  "may depend on it")
    return out


class _Leak(Exception):
    def __init__(self, code: str, message: str, hint: str) -> None:
        self.code, self.message, self.hint = code, message, hint


def _over(unit: Unit, n: Node) -> str | None:
    i = n.keyword("over")
    if i is None:
        return None
    node = unit.module.node(i)
    return node.attr("axis") if node.op is Op.AXIS else None


def _flag(unit: Unit, n: Node, key: str, default: bool) -> bool:
    i = n.keyword(key)
    if i is None:
        return default
    v = unit.module.node(i).attr("value")
    return bool(v) if isinstance(v, bool) else default


def _uses_length(unit: Unit, i: int) -> bool:
    """A static number computed from T (as opposed to T in a shape, which is a size)."""
    ty = unit.types.get(i)
    return (ty is not None and ty.value is not None and ty.kind is Kind.STATIC
            and T_SYMBOL in sp.sympify(ty.value).free_symbols)


def _visit(unit: Unit, i: int, n: Node, deps: dict[int, Dep]) -> Dep:
    types = unit.types
    ty = types.get(i)
    if n.op is Op.INPUT:
        return Dep(Reach.POINTWISE, why="the input at t")
    if ty is not None and ty.kind in (Kind.STATIC, Kind.MODULE, Kind.AXIS, Kind.STRING,
                                      Kind.BOOL, Kind.IDENTITY):
        return STATIC
    args = [deps[a] for a in n.args]
    arithmetic = n.op in (Op.BINARY, Op.NEG) or (
        n.op is Op.CALL and BUILTINS[n.attr("fn")].family in (Family.ELEMENTWISE, Family.COMBINE))
    if arithmetic and any(_uses_length(unit, a) for a in n.args):
        raise _Leak("LA201", "the sequence length T is used as a value: at token t it is not "
                    "known yet (it counts the tokens still to come)",
                    "normalise by a constant, or by a running count kept in a state")
    if n.op in (Op.STATE, Op.UPDATE):
        return Dep(Reach.PREFIX, why=f"recurrence of `{n.name}` over tokens <= t")
    if n.op is Op.CALL:
        fn = n.attr("fn")
        over = _over(unit, n)
        if over == "batch":
            raise _Leak("LA206", f"`{fn}(..., over = batch)` mixes examples of the batch",
                        "reduce over a feature axis instead; examples must stay independent")
        if fn in ("sum", "mean", "softmax") and over == "time":
            hint = ("a running mean is causal: cumsum(v, over = time) / T_t is not available; "
                    "use a state: `state m : [..]` with m = m + v") if fn == "mean" else \
                "use cumsum(v, over = time) for a running sum"
            raise _Leak("LA201", f"`{fn}(..., over = time)` reads every position of the sequence",
                        hint)
        if fn == "reverse_cumsum":
            raise _Leak("LA202", "`reverse_cumsum` sums tokens t..T: it reads the future",
                        "use cumsum(x, over = time), which sums tokens 1..t")
        if fn == "fft_conv":
            if not _flag(unit, n, "causal", False):
                raise _Leak("LA204", "`fft_conv` without `causal = true` convolves with future "
                            "tokens", "pass causal = true (zero-padded to 2T) or use causal_conv")
            return Dep(Reach.PREFIX, why="causal global convolution")
        if fn == "attention":
            if not _flag(unit, n, "causal", True):
                raise _Leak("LA205", "attention with `causal = false` attends to the whole "
                            "sequence", "drop `causal = false`: attention is causal by default")
            return Dep(Reach.PREFIX, why="causal attention over tokens <= t")
        if fn == "cumsum":
            return Dep(Reach.PREFIX, why="running sum over tokens <= t")
        if fn == "token_shift":
            return widen(join(args), 2, "token shift reads t-1")
        return join(args)
    if n.op is Op.APPLY:
        pnode = unit.module.node(n.args[0])
        ptype = types.get(n.args[0])
        if pnode.attr("kind") == "causal_conv":
            pad = pnode.keyword("padding")
            padding = unit.module.node(pad).attr("value") if pad is not None else "causal"
            if padding != "causal":
                raise _Leak("LA203", f"`{pnode.name}` is padded \"{padding}\": it reads tokens "
                            "after t", "use padding = \"causal\" (the default): pad width-1 "
                            "zeros on the left")
            window = 4
            if ptype is not None and ptype.module is not None and ptype.module.window is not None:
                w = unit.at_defaults(ptype.module.window)
                window = int(w) if w is not None else 4
            return widen(join(args[1:]), window, f"causal conv `{pnode.name}`")
        return join(args[1:])
    return join(args)
