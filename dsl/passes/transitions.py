"""Classify every state update S_t = S_{t-1} A_t + B_t into LANDSCAPE's transition classes.

The update is split into terms; exactly one term holds the state, as a chain
``scalars * S @ F1 @ F2 ...``. Each factor is recognised structurally (I, diag(a),
I - beta * outer(k, k), I + outer(a, b), diag(w) + outer(a, b)); the class is the most specific
one the factors allow, and it decides the chunk algorithm the backends use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import networkx as nx

from linarch.dsl.diagnostics import Reporter
from linarch.dsl.ir import Module, Node, Op
from linarch.dsl.printer import format_expr
from linarch.dsl.types import Kind, shapes_equal
from linarch.dsl.unit import Unit
from linarch.dsl.unparse import _Unparser


class TClass(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    IDENTITY = "identity"
    CONSTANT_DECAY = "constant decay"
    SCALAR_DECAY = "scalar decay"
    DIAGONAL_DECAY = "diagonal decay"
    DELTA = "delta"
    HOUSEHOLDER = "householder product"
    IPLR = "IPLR"
    DPLR = "DPLR"
    ELEMENTWISE = "elementwise scan"


class Gate(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    NONE = "none"
    CONSTANT = "constant"
    SCALAR = "scalar"
    DIAGONAL = "diagonal"


@dataclass(frozen=True)
class Decay:
    """A multiplicative factor of the transition: exp(log) when ``log`` is set, else ``value``."""

    node: int  # the factor as written (exp(g), diag(exp(gk)), gamma, ...)
    log: int | None  # node of the log-decay when written as exp(...)
    static: bool  # time-invariant
    diagonal: bool  # per key channel (diag(...)) rather than per head


@dataclass(frozen=True)
class RankOne:
    """I + sign * rate * outer(u, w), or diag(base) + sign * rate * outer(u, w) when base is set."""

    node: int
    u: int
    w: int
    rate: int | None
    sign: int
    base: int | None = None  # diag operand for DPLR
    scaled_identity: int | None = None  # alpha in alpha I + outer(a, b) (decay not on the read)


@dataclass(frozen=True)
class Step:
    """One micro-step S <- S A_j + B_j (most states have one step per token)."""

    update: int
    decays: tuple[Decay, ...]
    rank_ones: tuple[RankOne, ...]
    writes: tuple[tuple[int, int], ...]
    scales: tuple[int, ...] = ()  # scalar factors of S in the chain (-i-1 encodes 1/node i)
    factors: tuple[int, ...] = ()  # right factors S @ F1 @ F2 ..., in order


@dataclass(frozen=True)
class Transition:
    state: int  # STATE node (S_{t-1})
    update: int  # the last UPDATE node (S_t)
    name: str
    cls: TClass
    gate: Gate
    decays: tuple[Decay, ...]
    rank_ones: tuple[RankOne, ...]
    writes: tuple[tuple[int, int], ...]  # (sign, node) input terms B_t
    elementwise: tuple[int, ...] = ()  # factors with no log-space chunk form
    formula: str = ""
    steps: tuple[Step, ...] = ()

    @property
    def householders(self) -> int:
        return len(self.rank_ones) if self.cls in (TClass.DELTA, TClass.HOUSEHOLDER) else 0

    @property
    def algorithm(self) -> str:
        return ALGORITHMS[self.cls] + (
            {Gate.SCALAR: ", scalar gate", Gate.DIAGONAL: ", per-channel gate with sub-chunk "
             "anchoring", Gate.CONSTANT: ", constant decay"}.get(self.gate, "")
            if self.cls in (TClass.DELTA, TClass.HOUSEHOLDER, TClass.IPLR) else "")

    @property
    def label(self) -> str:
        if self.cls is TClass.HOUSEHOLDER:
            gate = "no" if self.gate is Gate.NONE else self.gate.value
            return f"{len(self.rank_ones)} householders ({gate} gate)"
        if self.cls in (TClass.DELTA, TClass.IPLR, TClass.DPLR):
            if self.cls is TClass.DPLR:
                return self.cls.value
            gate = "no" if self.gate is Gate.NONE else self.gate.value
            return f"{self.cls.value} ({gate} gate)"
        return self.cls.value


ALGORITHMS = {
    TClass.IDENTITY: "decay-masked chunks (no decay)",
    TClass.CONSTANT_DECAY: "decay-masked chunks",
    TClass.SCALAR_DECAY: "decay-masked chunks, log-space cumsum",
    TClass.DIAGONAL_DECAY: "sub-chunked diagonal decay (sub-chunks of 16)",
    TClass.DELTA: "UT transform",
    TClass.HOUSEHOLDER: "UT transform over the interleaved sequence",
    TClass.IPLR: "generalised UT transform (I + a b^T)",
    TClass.DPLR: "DPLR chunk form (four intra-chunk matrices, C = 16)",
    TClass.ELEMENTWISE: "sequential scan (no chunk form; slow)",
}


class _Reject(Exception):
    def __init__(self, code: str, message: str, node: Node, hint: str) -> None:
        self.code, self.message, self.node, self.hint = code, message, node, hint


def transitions(unit: Unit, report: Reporter) -> Unit:
    found = []
    m = unit.module
    for i, node in m.nodes(Op.STATE):
        steps = _steps(m, i)
        if not steps:
            continue  # never updated: reported by lowering (LA108)
        try:
            found.append(_classify(unit, i, steps))
        except _Reject as r:
            report(r.code, r.message, r.node.span or node.span, r.hint)
    return replace(unit, transitions=tuple(found))


def _steps(m: Module, state: int) -> list[int]:
    steps = []
    current = state
    while True:
        nxt = [u for u in m.users(current)
               if m.node(u).op is Op.UPDATE and m.node(u).args[0] == current]
        if not nxt:
            return steps
        steps.append(nxt[0])
        current = nxt[0]


def resolve(m: Module, i: int) -> int:
    while m.node(i).op is Op.ALIAS:
        i = m.node(i).args[0]
    return i


def _classify(unit: Unit, state: int, updates: list[int]) -> Transition:
    m = unit.module
    for here, after in zip(updates, updates[1:]):
        inside = nx.ancestors(m.graph, after) | nx.descendants(m.graph, after) | {after}
        readers = sorted(nx.descendants(m.graph, here) - inside)
        if readers:
            raise _Reject("LA109", f"`{m.node(here).name}` is read between its micro-steps",
                          m.node(readers[0]), "read the state after its last update")
    steps: list[Step] = []
    scales_all: list[int] = []
    right_all: list[int] = []
    elementwise: list[int] = []
    for upd in updates:
        step, scales, right, ew = _step(unit, upd)
        steps.append(step)
        scales_all += scales
        right_all += right
        elementwise += ew
    decays = tuple(d for st in steps for d in st.decays)
    rank_ones = tuple(r for st in steps for r in st.rank_ones)
    writes = tuple(w for st in steps for w in st.writes)
    last = m.node(updates[-1])
    cls, gate = _decide(m, decays, rank_ones, elementwise, last)
    return Transition(state, updates[-1], last.name, cls, gate, decays, rank_ones, writes,
                      tuple(elementwise), _formula(m, scales_all, right_all), tuple(steps))


def _step(unit: Unit, upd: int) -> tuple[Step, list[int], list[int], list[int]]:
    m = unit.module
    node = m.node(upd)
    s = node.args[0]
    downstream = nx.descendants(m.graph, s) | {s}

    def dep(i: int) -> bool:
        return i in downstream

    terms = _terms(m, node.args[1], 1)
    s_terms = [(sign, t) for sign, t in terms if dep(t)]
    writes = tuple((sign, t) for sign, t in terms if not dep(t))
    if len(s_terms) > 1:
        raise _Reject("LA302", f"state `{node.name}` appears in {len(s_terms)} terms of its update",
                      node, "factor it once: S @ (A1 + A2) + B")
    if not writes:
        raise _Reject("LA303", f"the update of `{node.name}` writes no input", node,
                      "add a write term such as outer(v, k)")
    scales: list[int] = []
    right: list[int] = []
    if s_terms and s_terms[0][0] < 0:
        raise _Reject("LA302", f"the state term of `{node.name}` is subtracted: a sign flip has "
                      "no log-space decay", node, "keep S with a + sign: S = S @ A + B")
    if s_terms:
        _chain(m, s_terms[0][1], s, dep, scales, right)
    state_shape = unit.types[s].shape
    decays: list[Decay] = []
    rank_ones: list[RankOne] = []
    elementwise: list[int] = []
    for f in scales:
        _scale(unit, f, state_shape, decays, elementwise)
    for r in right:
        _factor(unit, r, dep, decays, rank_ones, elementwise, state_shape)
    step = Step(upd, tuple(decays), tuple(rank_ones), writes, tuple(scales), tuple(right))
    return step, scales, right, elementwise


def _terms(m: Module, i: int, sign: int) -> list[tuple[int, int]]:
    i = resolve(m, i)
    n = m.node(i)
    if n.op is Op.BINARY and n.attr("op") in ("+", "-"):
        right_sign = sign if n.attr("op") == "+" else -sign
        return _terms(m, n.args[0], sign) + _terms(m, n.args[1], right_sign)
    if n.op is Op.NEG:
        return _terms(m, n.args[0], -sign)
    return [(sign, i)]


def _chain(m: Module, i: int, s: int, dep, scales: list[int], right: list[int]) -> None:
    i = resolve(m, i)
    if i == s:
        return
    n = m.node(i)
    if n.op is Op.BINARY and n.attr("op") in ("*", "/", "@"):
        a, b = n.args
        if dep(a) and dep(b):
            raise _Reject("LA301", "the state multiplies itself: the update is not affine", n,
                          "a linear recurrence uses S once per term")
        op = n.attr("op")
        if op == "@":
            if dep(b):
                raise _Reject("LA302", "the transition multiplies the state from the left", n,
                              "linarch uses the row convention S_t = S_{t-1} A_t + B_t: write "
                              "S @ A")
            _chain(m, a, s, dep, scales, right)
            right.append(b)
            return
        if op == "/" and dep(b):
            raise _Reject("LA301", "the state is in a denominator: the update is not affine", n,
                          "divide the readout instead")
        inner, factor = (a, b) if dep(a) else (b, a)
        _chain(m, inner, s, dep, scales, right)
        scales.append(factor if op == "*" else -factor - 1)  # negative id marks 1/factor
        return
    if n.op is Op.NEG:
        raise _Reject("LA302", "the state is negated: a sign flip has no log-space decay", n,
                      "keep S with a + sign; a transition with negative eigenvalues is written "
                      "I - beta * outer(k, k) with beta in [0, 2]")
    if n.op in (Op.CALL, Op.APPLY, Op.RESHAPE):
        raise _Reject("LA301", "the state passes through a non-linear or reshaping function",
                      n, "the update must be affine in the state: S_t = S_{t-1} A_t + B_t")
    raise _Reject("LA302", "the state term is not of the form decay * S @ A", n,
                  "write the update as `S = decay * S @ A + B` with one S term")


def _is_exp(m: Module, i: int) -> int | None:
    n = m.node(resolve(m, i))
    if n.op is Op.CALL and n.attr("fn") == "exp":
        return n.args[0]
    return None


def _scale(unit: Unit, f: int, state_shape, decays: list[Decay], elementwise: list[int]) -> None:
    m = unit.module
    if f < 0:  # 1/factor: only constants make sense in log space
        f = -f - 1
        ty = unit.types[f]
        if ty.kind is Kind.STATIC:
            decays.append(Decay(f, None, True, False))
        else:
            elementwise.append(f)
        return
    ty = unit.types[f]
    static = ty.kind is not Kind.TOKEN
    full = shapes_equal(ty.shape, state_shape) and len(state_shape) >= 2
    vector_state = len(state_shape) == 2
    per_channel = full and vector_state
    if full and not vector_state:
        elementwise.append(f)
        return
    log = _is_exp(m, f)
    if log is None and not static:
        elementwise.append(f)
        return
    decays.append(Decay(f, log, static, per_channel))


def _factor(unit: Unit, r: int, dep, decays, rank_ones, elementwise, state_shape) -> None:
    m = unit.module
    r = resolve(m, r)
    n = m.node(r)
    if dep(r):
        raise _Reject("LA301", "the transition depends on the state", n,
                      "A_t may depend on the input only")
    if n.op is Op.IDENTITY:
        return
    if n.op is Op.CALL and n.attr("fn") == "diag":
        a = n.args[0]
        log = _is_exp(m, a)
        static = unit.types[a].kind is not Kind.TOKEN
        if log is None and not static:
            elementwise.append(r)
            return
        decays.append(Decay(r, log, static, True))
        return
    if n.op is Op.BINARY and n.attr("op") == "*":
        a, b = n.args
        ta, tb = unit.types[a], unit.types[b]
        if Kind.IDENTITY in (ta.kind, tb.kind):  # exp(g) * I: the decay is the other side
            scalar_side = a if tb.kind is Kind.IDENTITY else b
        else:
            scalar_side = a if len(ta.shape) < len(tb.shape) else b
        other = b if scalar_side == a else a
        _scale(unit, scalar_side, state_shape, decays, elementwise)
        _factor(unit, other, dep, decays, rank_ones, elementwise, state_shape)
        return
    if n.op is Op.BINARY and n.attr("op") in ("+", "-"):
        sign = 1 if n.attr("op") == "+" else -1
        left = resolve(m, n.args[0])
        ln = m.node(left)
        r1 = _rank_one(m, n.args[1])
        if r1 is not None:
            rate, u, w = r1
            if ln.op is Op.IDENTITY:
                rank_ones.append(RankOne(r, u, w, rate, sign))
                return
            scaled = _scaled_identity(m, left)
            if scaled is not None:  # alpha I + outer(a, b): Comba's decay outside the read
                _scale(unit, scaled, state_shape, decays, elementwise)
                rank_ones.append(RankOne(r, u, w, rate, sign, scaled_identity=scaled))
                return
            if ln.op is Op.CALL and ln.attr("fn") == "diag":
                rank_ones.append(RankOne(r, u, w, rate, sign, base=ln.args[0]))
                return
    raise _Reject(
        "LA302", "this transition factor has no known structure", n,
        "factors are I, diag(exp(g)), I - beta * outer(k, k), I + outer(a, b), "
        "diag(w) + outer(a, b), or a per-head decay exp(g)")


def _scaled_identity(m: Module, i: int) -> int | None:
    n = m.node(i)
    if n.op is Op.BINARY and n.attr("op") == "*":
        a, b = (resolve(m, x) for x in n.args)
        if m.node(b).op is Op.IDENTITY:
            return a
        if m.node(a).op is Op.IDENTITY:
            return b
    return None


def _rank_one(m: Module, i: int) -> tuple[int | None, int, int] | None:
    i = resolve(m, i)
    n = m.node(i)
    if n.op is Op.CALL and n.attr("fn") == "outer":
        return None, resolve(m, n.args[0]), resolve(m, n.args[1])
    if n.op is Op.BINARY and n.attr("op") == "*":
        for rate, other in ((n.args[0], n.args[1]), (n.args[1], n.args[0])):
            on = m.node(resolve(m, other))
            if on.op is Op.CALL and on.attr("fn") == "outer":
                return rate, resolve(m, on.args[0]), resolve(m, on.args[1])
    return None


def _decide(m: Module, decays, rank_ones, elementwise, node: Node) -> tuple[TClass, Gate]:
    if elementwise:
        return TClass.ELEMENTWISE, Gate.NONE
    if any(d.diagonal for d in decays):
        gate = Gate.DIAGONAL
    elif any(not d.static for d in decays):
        gate = Gate.SCALAR
    elif decays:
        gate = Gate.CONSTANT
    else:
        gate = Gate.NONE
    if not rank_ones:
        return {Gate.NONE: TClass.IDENTITY, Gate.CONSTANT: TClass.CONSTANT_DECAY,
                Gate.SCALAR: TClass.SCALAR_DECAY, Gate.DIAGONAL: TClass.DIAGONAL_DECAY}[gate], gate
    if any(r.base is not None for r in rank_ones):
        if len(rank_ones) > 1:
            raise _Reject("LA302", "more than one diagonal-plus-low-rank factor", node,
                          "merge them into one diag(w) + outer(a, b)")
        return TClass.DPLR, gate
    householders = all(r.u == r.w and r.sign == -1 for r in rank_ones)
    if householders:
        return (TClass.DELTA if len(rank_ones) == 1 else TClass.HOUSEHOLDER), gate
    if len(rank_ones) == 1:
        return TClass.IPLR, gate
    raise _Reject("LA302", "a product of several general low-rank factors has no chunk form",
                  node, "use Householder factors I - beta * outer(k, k), or one IPLR factor")


def _formula(m: Module, scales: list[int], right: list[int]) -> str:
    u = _Unparser(m)
    parts = []
    for f in scales:
        if f < 0:
            parts.append("1/" + format_expr(u.expr(-f - 1), 4))
        else:
            parts.append(format_expr(u.expr(f), 2))
    parts += [format_expr(u.expr(r), 2) for r in right]
    return " ".join(parts) if parts else "I"
