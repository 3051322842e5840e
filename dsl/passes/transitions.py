"""Decompose every state update into the typed recurrence form (``linarch.dsl.recurrence``).

This pass is the only code that looks inside an update. Each update is split into terms; exactly
one term holds the state, as a chain ``c * S @ F1 @ F2 ...`` whose factors are read structurally
(decays ``exp(g)``, constants, ``diag(d)``; rank-one factors ``I - beta * outer(k, k)``,
``alpha * I + outer(a, b)``, ``diag(w) + outer(a, b)``); the other terms are the writes. Every
operand is placed on the state's axes with the language's broadcasting rule. The readouts are
the uses of the state outside its updates, recognised as contractions (``S @ q``, ``dot(S, q)``,
``q * S``, ``sum(q * S, over = a)``) or, failing that, as reads of the whole state.

States whose inputs depend on each other (two states coupled through their readouts) are refused
(LA304): a per-state stability proof says nothing about the joint system.
"""

from __future__ import annotations

from dataclasses import replace

import networkx as nx

from linarch.dsl.diagnostics import Reporter
from linarch.dsl.ir import Module, Node, Op
from linarch.dsl.printer import format_expr
from linarch.dsl.recurrence import (
    ALGORITHMS,
    Base,
    Decay,
    DecayForm,
    Frame,
    Gate,
    Operand,
    RankOne,
    Readout,
    Recurrence,
    Step,
    TClass,
    Write,
)
from linarch.dsl.types import Kind, Shape, alignment
from linarch.dsl.unit import Unit
from linarch.dsl.unparse import expression_text

__all__ = ["transitions", "resolve", "Recurrence", "TClass", "Gate", "ALGORITHMS"]


ROWK, COLK = -2, -1  # the row and column axes of a right factor's [*lead, K, K] frame


class _Reject(Exception):
    def __init__(self, code: str, message: str, node: Node, hint: str) -> None:
        self.code, self.message, self.node, self.hint = code, message, node, hint


def resolve(m: Module, i: int) -> int:
    while m.node(i).op is Op.ALIAS:
        i = m.node(i).args[0]
    return i


def transitions(unit: Unit, report: Reporter) -> Unit:
    found = []
    m = unit.module
    for i, node in m.nodes(Op.STATE):
        updates = _updates(m, i)
        if not updates:
            continue  # never updated: reported by lowering (LA108)
        try:
            found.append(_Decomposer(unit, i, updates).recurrence())
        except _Reject as r:
            report(r.code, r.message, r.node.span or node.span, r.hint)
    found = _refuse_coupled(unit, found, report)
    return replace(unit, transitions=tuple(found))


def _updates(m: Module, state: int) -> list[int]:
    steps = []
    current = state
    while True:
        nxt = [u for u in m.users(current)
               if m.node(u).op is Op.UPDATE and m.node(u).args[0] == current]
        if not nxt:
            return steps
        steps.append(nxt[0])
        current = nxt[0]


# ---------------------------------------------------------------------------- one state


class _Decomposer:
    def __init__(self, unit: Unit, state: int, updates: list[int]) -> None:
        self.unit = unit
        self.m = unit.module
        self.state = state
        self.updates = updates
        self.frame = Frame(unit.types[state].shape)
        self.depends = nx.descendants(self.m.graph, state) | {state}

    # -- helpers
    def node(self, i: int) -> Node:
        return self.m.node(i)

    def shape(self, i: int) -> Shape:
        return self.unit.types[i].shape

    def static(self, i: int) -> bool:
        return self.unit.types[i].kind is not Kind.TOKEN

    def dep(self, i: int) -> bool:
        return i in self.depends

    def reject(self, code: str, message: str, i: int, hint: str) -> _Reject:
        return _Reject(code, message, self.node(i), hint)

    def place(self, i: int, where: tuple[int, ...], inverse: bool = False) -> Operand:
        """Operand ``i`` whose feature axes sit on state axes ``where`` (one per axis)."""
        return Operand(resolve(self.m, i), where, self.static(i), inverse)

    # -- the whole state
    def recurrence(self) -> Recurrence:
        m = self.m
        for here, after in zip(self.updates, self.updates[1:]):
            inside = nx.ancestors(m.graph, after) | nx.descendants(m.graph, after) | {after}
            readers = sorted(nx.descendants(m.graph, here) - inside)
            if readers:
                raise self.reject("LA109", f"`{m.node(here).name}` is read between its "
                                  "micro-steps", readers[0], "read the state after its last update")
        steps = tuple(self.step(u) for u in self.updates)
        return Recurrence(self.state, m.node(self.updates[-1]).name, self.frame, steps,
                          self.readouts(), self.formula())

    def step(self, upd: int) -> Step:
        node = self.node(upd)
        s = node.args[0]
        terms = _terms(self.m, node.args[1], 1)
        s_terms = [(sign, t) for sign, t in terms if self.dep(t)]
        write_terms = [(sign, t) for sign, t in terms if not self.dep(t)]
        for _sign, t in s_terms:
            other = self.through_other_state(t)
            if other is not None:
                raise self.reject("LA304", f"states `{node.name}` and `{other}` are coupled: "
                                  f"`{node.name}`'s update reads `{other}`, which reads "
                                  f"`{node.name}`", t, "write them as one state, or let only "
                                  "one of them read the other")
        if len(s_terms) > 1:
            raise self.reject("LA302", f"state `{node.name}` appears in {len(s_terms)} terms of "
                              "its update", upd, "factor it once: S @ (A1 + A2) + B")
        if not write_terms:
            raise self.reject("LA303", f"the update of `{node.name}` writes no input", upd,
                              "add a write term such as outer(v, k)")
        if s_terms and s_terms[0][0] < 0:
            raise self.reject("LA302", f"the state term of `{node.name}` is subtracted: a sign "
                              "flip has no log-space decay", upd,
                              "keep S with a + sign: S = S @ A + B")
        self.operators: list[int] = []
        self.links: list[tuple[str, int]] = []
        factors = self.chain(s_terms[0][1], s) if s_terms else []
        writes = tuple(self.write(sign, t) for sign, t in write_terms)
        return Step(upd, tuple(factors), writes, tuple(dict.fromkeys(self.operators)),
                    tuple(self.links))

    def linked(self, kind: str, node: int, factors: list) -> list:
        """``factors`` as coming from one link of the chain (``kind``, ``node`` as written)."""
        self.links.append((kind, node))
        return [replace(f, link=node) for f in factors]

    def through_other_state(self, t: int) -> str | None:
        """The name of another state that term ``t`` reads and that itself reads this state."""
        g = self.m.graph
        between = (nx.ancestors(g, t) | {t}) & self.depends
        for i in between:
            n = self.node(i)
            if n.op is Op.UPDATE and i not in self.updates:
                return n.name
        return None

    # -- the state term: c * S @ F1 @ F2 ..., in application order
    def chain(self, i: int, s: int) -> list:
        i = resolve(self.m, i)
        if i == s:
            return []
        n = self.node(i)
        op = n.attr("op") if n.op is Op.BINARY else None
        if op in ("*", "/", "@"):
            a, b = n.args
            if self.dep(a) and self.dep(b):
                raise self.reject("LA301", "the state multiplies itself: the update is not "
                                  "affine", i, "a linear recurrence uses S once per term")
            if op == "@":
                if self.dep(b):
                    raise self.reject("LA302", "the transition multiplies the state from the "
                                      "left", i, "linarch uses the row convention S_t = "
                                      "S_{t-1} A_t + B_t: write S @ A")
                inner = self.chain(a, s)
                return inner + self.linked("factor", resolve(self.m, b), self.right(b))
            if op == "/" and self.dep(b):
                raise self.reject("LA301", "the state is in a denominator: the update is not "
                                  "affine", i, "divide the readout instead")
            inner, factor = (a, b) if self.dep(a) else (b, a)
            where = alignment(self.shape(factor), self.frame.shape)
            if where is None:
                raise self.reject("LA302", "this factor does not broadcast onto the state", i,
                                  "reshape it with `as [..]` to the state's leading axes")
            kind = "divide" if op == "/" else "scale"
            head = self.chain(inner, s)
            return head + self.linked(kind, resolve(self.m, factor),
                                      self.scale(factor, where, op == "/"))
        if n.op is Op.NEG:
            raise self.reject("LA302", "the state is negated: a sign flip has no log-space "
                              "decay", i, "keep S with a + sign; a transition with negative "
                              "eigenvalues is written I - beta * outer(k, k) with beta in [0, 2]")
        if n.op in (Op.CALL, Op.APPLY, Op.RESHAPE):
            raise self.reject("LA301", "the state passes through a non-linear or reshaping "
                              "function", i, "the update must be affine in the state: "
                              "S_t = S_{t-1} A_t + B_t")
        raise self.reject("LA302", "the state term is not of the form decay * S @ A", i,
                          "write the update as `S = decay * S @ A + B` with one S term")

    def leaves(self, i: int, axes: tuple[int, ...], inverse: bool = False,
               split_outer: bool = False) -> tuple[list[tuple[int, tuple[int, ...], bool]], int]:
        """The leaves of a product (through ``*``, ``/`` and, for rank-one parts and writes,
        ``outer`` and negation), each with the axes it stands on given that node ``i`` stands
        on ``axes``; and the product's sign. Placement composes: a leaf is aligned with its
        parent, never directly with the state."""
        i = resolve(self.m, i)
        n = self.node(i)
        if n.op is Op.BINARY and n.attr("op") in ("*", "/"):
            out: list = []
            sign = 1
            for k, child in enumerate(n.args):
                where = alignment(self.shape(child), self.shape(i))
                if where is None:
                    raise self.reject("LA302", "this product does not broadcast onto the state",
                                      i, "reshape its operands with `as [..]`")
                inv = inverse != (n.attr("op") == "/" and k == 1)
                found, s = self.leaves(child, tuple(axes[p] for p in where), inv, split_outer)
                out += found
                sign *= s
            return out, sign
        if split_outer and n.op is Op.NEG:
            found, sign = self.leaves(n.args[0], axes, inverse, split_outer)
            return found, -sign
        if split_outer and _is_outer(n) and not inverse:
            oshape = self.shape(i)
            lead = axes[: len(oshape) - 2]
            out = []
            for vec, last in ((n.args[0], axes[-2]), (n.args[1], axes[-1])):
                where = alignment(self.shape(vec)[:-1], oshape[:-2])
                out.append((resolve(self.m, vec), (*(lead[p] for p in where), last), False))
            return out, 1
        return [(i, axes, inverse)], 1

    def scale(self, i: int, axes: tuple[int, ...], inverse: bool = False) -> list[Decay]:
        """Multipliers of the state: a product is read as its factors, so ``a * b * S`` and
        ``a * (b * S)`` are one form."""
        found, _ = self.leaves(i, axes, inverse)
        return [replace(self.decay(x, where, inv), written=i) for x, where, inv in found]

    def decay(self, i: int, axes: tuple[int, ...], inverse: bool) -> Decay:
        n = self.node(i)
        if n.op is Op.CALL and n.attr("fn") == "exp":
            return Decay(i, self.place(n.args[0], axes, inverse), DecayForm.LOG)
        ty = self.unit.types[i]
        form = DecayForm.CONSTANT if self.static(i) and ty.range.positive else DecayForm.MULTIPLIER
        return Decay(i, self.place(i, axes, inverse), form)

    # -- right factors: S @ F, with F on (*lead, ROWK, COLK)
    def right(self, i: int) -> list:
        i = resolve(self.m, i)
        n = self.node(i)
        if self.dep(i):
            raise self.reject("LA301", "the transition depends on the state", i,
                              "A_t may depend on the input only")
        self.operators.append(i)
        if n.op is Op.IDENTITY:
            return []
        if self.unit.types[i].kind is Kind.IDENTITY:  # alpha * I
            return self.identity_scale(i)
        if n.op is Op.BINARY and n.attr("op") == "@":
            return self.right(n.args[0]) + self.right(n.args[1])
        if n.op is Op.CALL and n.attr("fn") == "diag":
            return self.scale(n.args[0], (*self.frame.lead, self.frame.col))
        if n.op is Op.BINARY and n.attr("op") in ("*", "/"):
            return self.scaled_factor(i)
        if n.op is Op.BINARY and n.attr("op") in ("+", "-"):
            return [self.rank_one(i)]
        raise self.unknown(i)

    def unknown(self, i: int) -> _Reject:
        return self.reject(
            "LA302", "this transition factor has no known structure", i,
            "factors are I, diag(exp(g)), I - beta * outer(k, k), I + outer(a, b), "
            "diag(w) + outer(a, b), or a per-head decay exp(g)")

    def factor_frame(self) -> tuple[int, ...]:
        return (*self.frame.lead, ROWK, COLK)

    def on_state(self, axes: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(self.frame.col if a in (ROWK, COLK) else a for a in axes)

    def identity_scale(self, i: int) -> list[Decay]:
        """``alpha * I`` (a product of the identity and per-head values)."""
        lead = self.frame.lead
        out: list[Decay] = []
        for x, inverse in _product(self.m, i):
            if self.unit.types[x].kind is Kind.IDENTITY:
                continue
            where = alignment(self.shape(x), self.frame.shape[: len(lead)])
            if where is None:
                raise self.reject("LA302", "a scaled identity needs one value per head", i,
                                  "write exp(g) * I with g per head, or diag(exp(g))")
            out += self.scale(x, tuple(lead[a] for a in where), inverse)
        return out

    def scaled_factor(self, i: int) -> list:
        """``c * F`` inside S @ (...): c per head commutes; along F's rows it acts before F,
        along its columns after."""
        found, _ = self.leaves(i, self.factor_frame())
        rank = len(self.shape(i))
        matrices = [(x, inv) for x, where, inv in found if len(self.shape(x)) == rank
                    and self.node(x).op is not Op.PARAM
                    and self.unit.types[x].kind is not Kind.STATIC]
        if len(matrices) != 1 or matrices[0][1]:
            raise self.reject("LA302", "an element-wise product of two matrices has no chunk "
                              "structure", i, "scale a factor by a per-head value: "
                              "exp(g) * (I - beta * outer(k, k))")
        matrix = matrices[0][0]
        before: list[Decay] = []
        after: list[Decay] = []
        for x, where, inv in found:
            if x == matrix:
                continue
            if ROWK in where and COLK in where:
                raise self.reject("LA302", "an element-wise product with a full matrix has no "
                                  "chunk structure", i, "scale a factor by a per-head value")
            decays = self.scale(x, self.on_state(where), inv)
            (after if COLK in where else before).extend(decays)
        return [*before, *self.right(matrix), *after]

    def rank_one(self, i: int) -> RankOne:
        n = self.node(i)
        sign = 1 if n.attr("op") == "+" else -1
        base, low = (resolve(self.m, x) for x in n.args)
        parts = self.low_rank(low, i)
        if parts is None and sign > 0:
            base, low = low, base
            parts = self.low_rank(low, i)
        if parts is None:
            raise self.unknown(i)
        rate, u, w, s = parts
        ln = self.node(low)
        written = None
        if ln.op is Op.BINARY and ln.attr("op") == "*":
            a, b = (resolve(self.m, x) for x in ln.args)
            written = a if _is_outer(self.node(b)) else b if _is_outer(self.node(a)) else None
        outer = _one_outer(self.m, low)
        bn = self.node(base)
        if bn.op is Op.IDENTITY:
            return RankOne(i, sign * s, rate, u, w, written_rate=written, outer=outer)
        if self.unit.types[base].kind is Kind.IDENTITY:
            return RankOne(i, sign * s, rate, u, w, Base.SCALED, tuple(self.identity_scale(base)),
                           written, outer)
        if bn.op is Op.CALL and bn.attr("fn") == "diag":
            decays = self.scale(bn.args[0], (*self.frame.lead, self.frame.col))
            return RankOne(i, sign * s, rate, u, w, Base.DIAGONAL, tuple(decays), written, outer)
        raise self.unknown(i)

    def low_rank(self, i: int, where: int):
        """``c1 * c2 * outer(u, w)`` -> (per-head rates, u side, w side, sign), or None."""
        if self.unit.types[i].kind is Kind.IDENTITY:
            return None
        outers = [x for x, inv in _product(self.m, i) if _is_outer(self.node(x)) and not inv]
        if len(outers) != 1:
            return None
        found, sign = self.leaves(i, self.factor_frame(), split_outer=True)
        rate: list[Operand] = []
        u: list[Operand] = []
        w: list[Operand] = []
        for x, axes, inverse in found:
            rows, cols = ROWK in axes, COLK in axes
            if rows and cols:
                raise self.reject("LA302", "the rate of this low-rank factor is a full matrix: "
                                  "the factor is not rank one", where,
                                  "use one rate per head (beta [H]) or fold it into a vector")
            op = self.place(x, self.on_state(axes), inverse)
            (u if rows else w if cols else rate).append(op)
        return (tuple(sorted(rate, key=_key)), tuple(sorted(u, key=_key)),
                tuple(sorted(w, key=_key)), sign)

    # -- writes
    def write(self, sign: int, i: int) -> Write:
        i = resolve(self.m, i)
        where = alignment(self.shape(i), self.frame.shape)
        if where is None:
            raise self.reject("LA302", "this write does not broadcast onto the state", i,
                              "reshape it with `as [..]` to the state's shape")
        found, s = self.leaves(i, where, split_outer=True)
        ops = tuple(sorted((self.place(x, axes, inv) for x, axes, inv in found), key=_key))
        return Write(i, sign * s, ops, _one_outer(self.m, i))

    # -- readouts
    def chain_nodes(self) -> set[int]:
        """Nodes computed on the way from the state to its updates (not readouts)."""
        g = self.m.graph
        inside: set[int] = set()
        for upd in self.updates:
            inside |= (nx.ancestors(g, upd) & self.depends) | {upd}
        return inside

    def readouts(self) -> tuple[Readout, ...]:
        m = self.m
        chain = self.chain_nodes()
        values = [self.state, *self.updates]
        reads: list[Readout] = []
        seen: set[int] = set()
        for after, v in enumerate(values):
            for u in m.users(v):
                if u in chain or m.node(u).op is Op.UPDATE and m.node(u).args[0] == v:
                    continue
                read = self.recognise(u, v, after)
                if read.node not in seen:
                    seen.add(read.node)
                    reads.append(read)
        # values the updates compute from the state that are also used elsewhere
        for i in sorted(chain - set(self.updates) - {self.state}):
            if any(u not in chain for u in m.users(i)) and i not in seen:
                after = 0 if not any(upd in nx.ancestors(m.graph, i) for upd in self.updates) \
                    else len(self.updates)
                reads.append(Readout(i, after, (), (), computed=True))
        return tuple(reads)

    def recognise(self, u: int, v: int, after: int) -> Readout:
        m = self.m
        n = m.node(u)
        whole = Readout(v, after, (), ())
        f = self.frame
        if m.node(u).op is Op.ALIAS:
            return whole
        others = [a for a in n.args if resolve(m, a) != v]
        if any(self.dep(a) for a in others):
            return whole
        if n.op is Op.BINARY and n.attr("op") == "@" and resolve(m, n.args[0]) == v \
                and len(self.shape(n.args[1])) < f.rank and f.col is not None:
            q = n.args[1]
            lead = alignment(self.shape(q)[:-1], f.shape[: max(0, f.rank - 2)])
            if lead is None:
                return whole
            return Readout(u, after, (self.place(q, (*lead, f.col)),), (f.col,))
        if n.op is Op.CALL and n.attr("fn") == "dot" and len(others) == 1 and f.col is not None:
            q = others[0]
            where = alignment(self.shape(q), f.shape)
            if where is None:
                return whole
            return Readout(u, after, (self.place(q, where),), (f.col,))
        if n.op is Op.CALL and n.attr("fn") == "sum" and len(n.positional()) == 1:
            axis = self.over(n)
            return whole if axis is None else Readout(u, after, (), (axis,))
        if n.op is Op.BINARY and n.attr("op") == "*" and len(others) == 1:
            q = others[0]
            where = alignment(self.shape(q), f.shape)
            if where is None or self.shape(u) != f.shape:
                return whole
            query = (self.place(q, where),)
            users = m.users(u)
            user = m.node(users[0]) if len(users) == 1 else None
            if user is not None and user.op is Op.CALL and user.attr("fn") == "sum" \
                    and len(user.positional()) == 1:
                axis = self.over(user)
                if axis is not None:
                    return Readout(users[0], after, query, (axis,))
            return Readout(u, after, query, ())
        return whole

    def over(self, n: Node) -> int | None:
        k = n.keyword("over")
        value = -1 if k is None else self.unit.types[k].value
        if value is None or not getattr(value, "is_Integer", isinstance(value, int)):
            return None
        axis = int(value) if value >= 0 else self.frame.rank + int(value)
        return axis if 0 <= axis < self.frame.rank else None

    def formula(self) -> str:
        parts = []
        for upd in self.updates:
            for _sign, t in _terms(self.m, self.node(upd).args[1], 1):
                if self.dep(t):
                    parts.append(_state_factors(self.m, t, self.dep))
        return " ".join(p for p in parts if p) or "I"


def _key(op: Operand) -> tuple:
    return (op.node, op.axes, op.inverse)


def _is_outer(n: Node) -> bool:
    return n.op is Op.CALL and n.attr("fn") == "outer"


def _terms(m: Module, i: int, sign: int) -> list[tuple[int, int]]:
    i = resolve(m, i)
    n = m.node(i)
    if n.op is Op.BINARY and n.attr("op") in ("+", "-"):
        right_sign = sign if n.attr("op") == "+" else -sign
        return _terms(m, n.args[0], sign) + _terms(m, n.args[1], right_sign)
    if n.op is Op.NEG:
        return _terms(m, n.args[0], -sign)
    return [(sign, i)]


def _one_outer(m: Module, i: int) -> int | None:
    """The single outer() call among the factors of product ``i`` (None if not exactly one)."""
    outers = [x for x, inv in _product(m, i) if _is_outer(m.node(x)) and not inv]
    return outers[0] if len(outers) == 1 else None


def _product(m: Module, i: int, inverse: bool = False) -> list[tuple[int, bool]]:
    """``a * b / c`` -> [(a, False), (b, False), (c, True)] (aliases resolved)."""
    i = resolve(m, i)
    n = m.node(i)
    if n.op is Op.BINARY and n.attr("op") in ("*", "/"):
        right_inverse = inverse != (n.attr("op") == "/")
        return _product(m, n.args[0], inverse) + _product(m, n.args[1], right_inverse)
    return [(i, inverse)]


def _state_factors(m: Module, i: int, dep) -> str:
    """The factors of S in a state term, as the program writes them (for `show`)."""
    i = resolve(m, i)
    n = m.node(i)
    if n.op is Op.BINARY and n.attr("op") in ("*", "/", "@"):
        a, b = n.args
        inner, other = (a, b) if dep(a) else (b, a)
        head = _state_factors(m, inner, dep)
        text = format_expr(expression_text(m, other), 2 if n.attr("op") != "/" else 4)
        text = "1/" + text if n.attr("op") == "/" else text
        if n.attr("op") == "@" or inner == a:
            return f"{head} {text}".strip()
        return f"{text} {head}".strip()
    return ""


# ---------------------------------------------------------------------------- coupling


def _refuse_coupled(unit: Unit, found: list[Recurrence], report: Reporter) -> list[Recurrence]:
    """States whose inputs read each other form one joint recurrence: refused (LA304)."""
    m = unit.module
    g = m.graph
    owner: dict[int, int] = {}
    for rec in found:
        for v in (rec.state, *(s.update for s in rec.steps)):
            owner[v] = rec.state
    deps = nx.DiGraph()
    where: dict[tuple[int, int], int] = {}
    for rec in found:
        deps.add_node(rec.state)
        for i in recurrence_inputs(rec):
            for other in {owner[a] for a in nx.ancestors(g, i) | {i} if a in owner}:
                if other != rec.state:
                    deps.add_edge(other, rec.state)
                    where.setdefault((other, rec.state), i)
    coupled: set[int] = set()
    for cycle in nx.simple_cycles(deps):
        a, b = cycle[-1], cycle[0]
        first = m.node(a).name
        second = m.node(b).name
        node = m.node(where[(a, b)])
        if b not in coupled:
            report("LA304", f"states `{first}` and `{second}` are coupled: each one's update "
                   "reads the other", node.span or m.node(b).span,
                   "write them as one state, or let only one of them read the other")
        coupled |= set(cycle)
    return [rec for rec in found if rec.state not in coupled]


def recurrence_inputs(rec: Recurrence) -> list[int]:
    """Every node the recurrence consumes besides its own state: decays, rank-one operands,
    writes and readout queries."""
    out: list[int] = []
    for step in rec.steps:
        for f in step.factors:
            if isinstance(f, Decay):
                out.append(f.value.node)
            else:
                out += [o.node for o in (*f.rate, *f.u, *f.w)]
                out += [d.value.node for d in f.base_decays]
        out += [o.node for w in step.writes for o in w.operands]
    out += [o.node for r in rec.reads for o in r.query]
    return list(dict.fromkeys(out))
