"""Editing programs as syntax trees: the vocabulary the mutation operators are written in.

``View`` answers what an operator asks of a program (its states, each update as
``scalars * S @ F1 @ F2 + writes`` read from the typed recurrence form of the transitions pass,
its readouts, the shapes the type pass proved, and that typed form itself per state, which the
newer operators read); ``Draft``
records an operator's edits at the original line indices and builds the new program; ``prune``
drops what an edit left unread. New code is written as text and parsed (``parse_expr``), the way
a person would write it, so operators read like the programs they produce.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache

from linarch.dsl import syntax as ast
from linarch.dsl.builtins import BUILTINS, RESERVED_VALUES
from linarch.dsl.diagnostics import Reporter
from linarch.dsl.ir import Op
from linarch.dsl.params import PARAM_KINDS
from linarch.dsl.parser import parse
from linarch.dsl.pipeline import Result, analyse
from linarch.dsl.printer import format_expr, format_program
from linarch.dsl.recurrence import Decay, DecayForm, RankOne
from linarch.dsl.source import Source
from linarch.grammar.lalr import KEYWORDS


@dataclass(frozen=True)
class Edit:
    """What an operator returns: the new program and one sentence saying what changed."""

    program: ast.Program
    description: str


# ------------------------------------------------------------------ expressions


def children(e) -> tuple:
    if isinstance(e, ast.Unary):
        return (e.operand,)
    if isinstance(e, ast.Binary):
        return (e.left, e.right)
    if isinstance(e, ast.Call):
        return e.args
    if isinstance(e, ast.Chain):
        return e.items
    if isinstance(e, ast.Keyword):
        return (e.value,)
    if isinstance(e, ast.Reshape):
        return (e.value, *e.dims)
    return ()


def rebuild(e, parts: tuple):
    if isinstance(e, ast.Unary):
        return replace(e, operand=parts[0])
    if isinstance(e, ast.Binary):
        return replace(e, left=parts[0], right=parts[1])
    if isinstance(e, ast.Call):
        return replace(e, args=parts)
    if isinstance(e, ast.Chain):
        return replace(e, items=parts)
    if isinstance(e, ast.Keyword):
        return replace(e, value=parts[0])
    if isinstance(e, ast.Reshape):
        return replace(e, value=parts[0], dims=parts[1:])
    return e


def walk(e) -> Iterator:
    yield e
    for k in children(e):
        yield from walk(k)


def rewrite(e, fn: Callable):
    """Top-down rewrite: ``fn(node)`` returns a replacement (not visited further) or None."""
    new = fn(e)
    if new is not None:
        return new
    parts = children(e)
    return rebuild(e, tuple(rewrite(k, fn) for k in parts)) if parts else e


def refs(e) -> list[str]:
    """Names an expression reads, in order: values and called parameters."""
    out = []
    for n in walk(e):
        if isinstance(n, ast.Name):
            out.append(n.id)
        elif isinstance(n, ast.Call):
            out.append(n.func)
    return out


def stmt_exprs(stmt: ast.Stmt) -> tuple:
    if isinstance(stmt, (ast.Assign, ast.Return, ast.LossDecl)):
        return (stmt.value,)
    if isinstance(stmt, ast.ParamDecl):
        return (stmt.ctor,)
    if isinstance(stmt, ast.StateDecl):
        return stmt.shape
    return ()


def map_stmt(stmt: ast.Stmt, fn: Callable) -> ast.Stmt:
    if isinstance(stmt, (ast.Assign, ast.Return, ast.LossDecl)):
        return replace(stmt, value=rewrite(stmt.value, fn))
    if isinstance(stmt, ast.ParamDecl):
        return replace(stmt, ctor=rewrite(stmt.ctor, fn))
    return stmt


def flatten(e, op: str) -> list:
    """``a op b op c`` (left-associated) -> [a, b, c]."""
    if isinstance(e, ast.Binary) and e.op == op:
        return flatten(e.left, op) + [e.right]
    return [e]


def join(items: Sequence, op: str):
    out = items[0]
    for item in items[1:]:
        out = ast.Binary(op, out, item)
    return out


def paste(e) -> str:
    """An expression as text, parenthesised so it can be pasted into any other expression."""
    text = format_expr(e)
    return text if isinstance(e, (ast.Name, ast.Num, ast.Call)) else f"({text})"


@lru_cache(maxsize=4096)
def parse_stmt(text: str) -> ast.Stmt:
    """One statement parsed from text: operators write new code the way a person would."""
    source = Source("mixer M():\n    " + text + "\n")
    report = Reporter(source)
    program = parse(source, report)
    if report.has_errors or len(program.lines) != 2:
        raise AssertionError(f"mutation operator wrote invalid code: {text}")
    return program.lines[1].stmt


def parse_expr(text: str):
    return parse_stmt("e_ = " + text).value


# ------------------------------------------------------------------ what operators read


@dataclass(frozen=True)
class Update:
    """A state update as ``scalars * S @ F1 @ F2 ... + writes``: the syntax of the links and
    writes the typed recurrence form found (``linarch.dsl.recurrence``), so it rebuilds."""

    index: int
    state: str
    scalars: tuple
    factors: tuple
    writes: tuple

    def stmt(self) -> ast.Assign:
        e = ast.Name(self.state)
        if self.scalars:
            e = ast.Binary("*", join(self.scalars, "*"), e)
        for f in self.factors:
            e = ast.Binary("@", e, f)
        return ast.Assign(self.state, join((e, *self.writes), "+"))


def is_call(e, *funcs: str) -> bool:
    return isinstance(e, ast.Call) and e.func in funcs


def _pair(e, i: int, m, out: dict[int, object]) -> None:
    """Map IR node ``i`` and the nodes under it to the syntax ``e`` of the statement that wrote
    them (a name stands for its definition: the walk stops there)."""
    out.setdefault(i, e)
    n = m.node(i)
    if isinstance(e, ast.Binary) and n.op is Op.BINARY:
        _pair(e.left, n.args[0], m, out)
        _pair(e.right, n.args[1], m, out)
    elif isinstance(e, ast.Unary) and n.op is Op.NEG:
        _pair(e.operand, n.args[0], m, out)
    elif isinstance(e, ast.Reshape) and n.op is Op.RESHAPE:
        for sub, a in zip((e.value, *e.dims), n.args):
            _pair(sub, a, m, out)
    elif isinstance(e, ast.Call) and n.op in (Op.CALL, Op.APPLY):
        args = n.args[1:] if n.op is Op.APPLY else n.args
        for sub, a in zip(e.args, args):
            _pair(sub.value if isinstance(sub, ast.Keyword) else sub, a, m, out)


class Namer:
    """Fresh names: never one the program uses, nor a prefix of a dotted parameter name."""

    def __init__(self, taken: set[str]) -> None:
        self.taken = set(taken)

    def __call__(self, base: str) -> str:
        name, k = base, 2
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name


class View:
    """A program with the lookups the operators share; read-only."""

    def __init__(self, program: ast.Program) -> None:
        self.program = program
        self.stmts = program.statements
        self.hparams = {h.name: h for h in program.header.hparams} if program.header else {}
        self.states = {s.name: s for s in self.stmts if isinstance(s, ast.StateDecl)}
        self.assigns: dict[str, int] = {}  # binding (not a state) -> line index
        self.params: dict[str, int] = {}
        self.updates: dict[str, list[int]] = {}
        for i, s in enumerate(self.stmts):
            if isinstance(s, ast.Assign):
                if s.name in self.states:
                    self.updates.setdefault(s.name, []).append(i)
                else:
                    self.assigns[s.name] = i
            elif isinstance(s, ast.ParamDecl):
                self.params.update(dict.fromkeys(s.names, i))

    def namer(self) -> Namer:
        taken = set(BUILTINS) | set(PARAM_KINDS) | set(RESERVED_VALUES) | set(KEYWORDS)
        taken |= set(self.hparams) | set(self.states) | set(self.assigns) | set(self.params)
        for s in self.stmts:
            for e in stmt_exprs(s):
                taken.update(refs(e))
        for name in list(taken):
            parts = name.split(".")
            taken.update(".".join(parts[:k]) for k in range(1, len(parts)))
        return Namer(taken)

    def value(self, name: str):
        i = self.assigns.get(name)
        return self.stmts[i].value if i is not None else None

    # ---- what the typed recurrence form says about each update (never decomposed here)
    @cached_property
    def _forms(self) -> dict[int, tuple]:
        """Update line -> (its typed step, IR node -> syntax of that line)."""
        result = analysis(format_program(self.program))
        unit = result.unit
        if unit is None or not result.ok:
            return {}
        out = {}
        for rec in unit.transitions:
            lines = self.updates.get(rec.name, [])
            if len(lines) != len(rec.steps):
                continue
            for line, step in zip(lines, rec.steps):
                written: dict[int, object] = {}
                _pair(self.stmts[line].value, unit.module.node(step.update).args[1],
                      unit.module, written)
                out[line] = (step, written)
        return out

    def decompose(self, i: int) -> Update | None:
        """Update line ``i`` as scalars, factors and writes (None when the typed form of a link
        or write is not written in that line, or the state is divided)."""
        form = self._forms.get(i)
        if form is None:
            return None
        step, written = form
        if any(kind == "divide" or node not in written for kind, node in step.chain) or \
                any(w.term not in written for w in step.writes):
            return None
        scales = [written[n] for kind, n in step.chain if kind == "scale"]
        factors = tuple(written[n] for kind, n in step.chain if kind == "factor")
        writes = tuple(written[w.term] if w.sign > 0 else ast.Unary("-", written[w.term])
                       for w in step.writes)
        return Update(i, self.stmts[i].name, tuple(reversed(scales)), factors, writes)

    def _link(self, u: Update, expr):
        """The typed factors of the link written as ``expr`` in update ``u``."""
        step, written = self._forms[u.index]
        node = next((n for n, e in written.items() if e is expr), None)
        return [f for f in step.factors if f.link == node], written

    def exp_arg(self, u: Update, expr):
        """The log-decay g of a link that is one decay exp(g) (a scalar of S or diag(exp(g)))."""
        found, written = self._link(u, expr)
        if len(found) != 1 or not isinstance(found[0], Decay) or \
                found[0].form is not DecayForm.LOG:
            return None
        return written.get(found[0].value.node)

    def rank_one(self, u: Update, expr):
        """(the rate as written, the outer call) of a link that is one rank-one factor."""
        found, written = self._link(u, expr)
        if len(found) != 1 or not isinstance(found[0], RankOne) or found[0].outer is None:
            return None
        r = found[0]
        rates = [written[r.written_rate]] if r.written_rate in written else []
        return rates, written.get(r.outer)

    def has_decay(self, u: Update) -> bool:
        step, _ = self._forms[u.index]
        return bool(step.decays) or any(r.base_decays for r in step.rank_ones)

    def is_delta(self, u: Update, expr) -> bool:
        found, _ = self._link(u, expr)
        return len(found) == 1 and isinstance(found[0], RankOne) and found[0].householder

    def outer_call(self, u: Update, write):
        """The outer(v, k) call of a write of ``u``, as written (None if it has not one)."""
        step, written = self._forms[u.index]
        for w in step.writes:
            if written.get(w.term) is write or (isinstance(write, ast.Unary)
                                                and written.get(w.term) is write.operand):
                return written.get(w.outer) if w.outer is not None else None
        return None

    def all_updates(self) -> list[Update]:
        out = []
        for indices in self.updates.values():
            out.extend(u for u in (self.decompose(i) for i in indices) if u is not None)
        return out

    def dims(self, state: str) -> tuple[str, str, str] | None:
        """(heads, value width, key width) of a state ``[H, dv, dk]``, as pasteable text."""
        shape = self.states[state].shape
        return tuple(paste(d) for d in shape) if len(shape) == 3 else None

    def readouts(self) -> list[tuple[int, str, str, object]]:
        """(line, binding, state, query) for each ``S @ q`` read of a state."""
        out = []
        for name, i in self.assigns.items():
            for n in walk(self.stmts[i].value):
                if (isinstance(n, ast.Binary) and n.op == "@" and isinstance(n.left, ast.Name)
                        and n.left.id in self.states):
                    out.append((i, name, n.left.id, n.right))
        return sorted(out, key=lambda r: r[0])

    @cached_property
    def shapes(self) -> dict[str, tuple]:
        """Binding -> its feature shape at the declared defaults (from the type pass)."""
        return shapes_of(format_program(self.program))

    @cached_property
    def token_values(self) -> frozenset[str]:
        """Bindings whose value changes from token to token (not static formulas)."""
        from linarch.dsl.types import Kind

        unit = self.unit
        if unit is None:
            return frozenset()
        return frozenset(node.name for i, node in unit.module.nodes()
                         if node.name and i in unit.types and unit.types[i].kind is Kind.TOKEN)

    @cached_property
    def unit(self):
        """The front end's analysis of this program (None if it does not check)."""
        return analysis(format_program(self.program)).unit

    @cached_property
    def transitions(self) -> dict:
        """State name -> its typed recurrence form (``linarch.dsl.recurrence.Recurrence``: class,
        gate, decays, rank-one factors, writes, micro-steps, readouts): what the compiler proved
        about each update. Operators read this rather than decomposing updates themselves."""
        return {} if self.unit is None else {t.name: t for t in self.unit.transitions}


@lru_cache(maxsize=64)
def analysis(text: str) -> Result:
    """The front end's analysis of a text; cached, because a chain of mutations analyses each
    program twice (accepting it, then reading its shapes as the next parent)."""
    return analyse(Source(text))


def shapes_of(text: str) -> dict[str, tuple]:
    unit = analysis(text).unit
    if unit is None:
        return {}
    return {node.name: tuple(unit.at_defaults(d) for d in unit.types[i].shape)
            for i, node in unit.module.nodes() if node.name and i in unit.types}


class Draft:
    """An operator's edits to a program, applied at original line indices when built."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.fresh = view.namer()
        self.stmts: dict[int, ast.Stmt] = {}
        self.before: dict[int, list[ast.Stmt]] = {}
        self.after: dict[int, list[ast.Stmt]] = {}
        self.params: list[ast.Stmt] = []
        self.hparams: list[ast.HParam] = []
        self.removed: set[int] = set()

    def remove(self, i: int) -> None:
        """Drop the statement at line i (what it alone read is pruned afterwards)."""
        self.removed.add(i)

    def set(self, i: int, stmt: ast.Stmt) -> None:
        if stmt != self.get(i):  # an unchanged statement keeps its comment
            self.stmts[i] = stmt

    def get(self, i: int) -> ast.Stmt:
        return self.stmts.get(i, self.view.stmts[i])

    def insert_before(self, i: int, *stmts: ast.Stmt) -> None:
        self.before.setdefault(i, []).extend(stmts)

    def insert_after(self, i: int, *stmts: ast.Stmt) -> None:
        self.after.setdefault(i, []).extend(stmts)

    def param(self, base: str, ctor: str) -> str:
        """Declare a new parameter under a fresh name; returns the name."""
        name = self.fresh(base)
        self.params.append(parse_stmt(f"{name} : {ctor}"))
        return name

    def projection(self, base: str, width: str, *, low_rank: int | None = None,
                   bias: bool = False) -> str:
        """New weights projecting x to ``width`` features, through ``low_rank`` features if
        given (as GLA's and KDA's gates do: ``base.1(base.0(x))``); returns the call as text."""
        tail = ", bias = true" if bias else ""
        if low_rank is None:
            return f"{self.param(base, f'linear(hidden_size -> {width}{tail})')}(x)"
        name = self.fresh(base)  # fresh, so no parameter starts with `name.` either
        self.params.append(parse_stmt(f"{name}.0 : linear(hidden_size -> {low_rank})"))
        self.params.append(parse_stmt(f"{name}.1 : linear({low_rank} -> {width}{tail})"))
        return f"{name}.1({name}.0(x))"

    def hparam(self, base: str, value: int | float) -> str:
        """Append a new hyper-parameter (a constructor keyword) to the header."""
        name = self.fresh(base)
        self.hparams.append(ast.HParam(name, ast.Num(value, repr(value))))
        return name

    def build(self, description: str) -> Edit | None:
        """The edited program; None if it needs new parameters but has no params section."""
        view = self.view
        last_param = max(view.params.values(), default=None)
        after = dict(self.after)
        if self.params:
            if last_param is None:
                return None
            after[last_param] = [*self.params, *after.get(last_param, ())]
        lines: list[ast.Line] = []
        for i, line in enumerate(view.program.lines):
            lines.extend(ast.Line(s) for s in self.before.get(i, ()))
            if i in self.removed:
                continue
            stmt = self.stmts.get(i, line.stmt)
            if isinstance(stmt, ast.Header) and self.hparams:
                stmt = replace(stmt, hparams=stmt.hparams + tuple(self.hparams))
            if stmt is not line.stmt:
                line = replace(line, stmt=stmt, comment_after=None)
            lines.append(line)
            extra = after.get(i, ())
            blank = i != last_param  # a new block after a statement; params join their list
            lines.extend(ast.Line(s, blank_before=blank and k == 0) for k, s in enumerate(extra))
        header = lines[0].stmt if lines and isinstance(lines[0].stmt, ast.Header) else None
        return Edit(replace(view.program, header=header, lines=tuple(lines)), description)


def prune(program: ast.Program) -> ast.Program:
    """Drop bindings and parameters that nothing live reads (what an edit left behind)."""
    stmts = program.statements
    states = {s.name for s in stmts if isinstance(s, ast.StateDecl)}
    reads: dict[str, list] = {}
    roots: list = []
    for s in stmts:
        if isinstance(s, ast.Assign) and s.name not in states:
            reads.setdefault(s.name, []).append(s.value)
        elif isinstance(s, ast.ParamDecl):
            for n in s.names:
                reads.setdefault(n, []).append(s.ctor)
        else:
            roots.extend(stmt_exprs(s))
    live: set[str] = set()
    todo = [r for e in roots for r in refs(e)]
    while todo:
        name = todo.pop()
        if name not in live:
            live.add(name)
            todo.extend(r for e in reads.get(name, ()) for r in refs(e))
    lines, blank = [], False
    for line in program.lines:
        s = line.stmt
        if isinstance(s, ast.Assign) and s.name not in states and s.name not in live:
            s = None
        elif isinstance(s, ast.ParamDecl) and not all(n in live for n in s.names):
            names = tuple(n for n in s.names if n in live)
            s = replace(s, names=names, name_spans=()) if names else None
        if s is None:
            blank = blank or line.blank_before
            continue
        lines.append(replace(line, stmt=s, blank_before=line.blank_before or blank))
        blank = False
    return replace(program, lines=tuple(lines))
