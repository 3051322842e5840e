"""Typed mutations and crossover of programs: the search's move set when no LLM is available.

Each operator (``linarch.dsl.mutate_ops``) is a small function on the syntax tree that returns
an ``Edit`` (a new program and one sentence saying what changed) or None where it does not apply.
The engine picks applicable operators with a seeded ``random.Random``, drops what the edit left
unread (``prune``), prints the result with ``format_program`` and keeps it only if the front end
accepts it with no error, proves every range it proved of the parent (no new stability warning:
a constant tuned past a rate's bound of 2 is refused), and it is a different architecture (a new
structural hash) or has a new hyper-parameter default. Crossover moves one definition from a
program into another; recombination adds another program's state, with its update and
readout, as a second memory. Nothing here imports beyond the front end: mutation is a language
service, like ``fmt``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from linarch.dsl import syntax as ast
from linarch.dsl.builtins import BUILTINS, RESERVED_VALUES
from linarch.dsl.diagnostics import Reporter
from linarch.dsl.hashing import structural_hash
from linarch.dsl.mutate_ops import OPERATORS
from linarch.dsl.mutate_tree import Draft, Edit, View, analysis, map_stmt, prune, refs, rewrite
from linarch.dsl.parser import parse
from linarch.dsl.printer import format_expr, format_program, format_stmt
from linarch.dsl.source import Source


@dataclass(frozen=True)
class Mutation:
    """A valid program derived from another, the operators applied and what they changed."""

    source: str
    operators: tuple[str, ...]
    description: str  # one sentence; the search records it as the candidate's motivation
    tries: int = 1  # programs the engine checked to find this one (1 = first try accepted)


class MutationError(ValueError):
    """No operator produced a valid, different program within the tries allowed."""


@lru_cache(maxsize=64)
def parse_program(text: str) -> ast.Program:
    """The syntax tree of a program (cached: the search mutates the same parents many times)."""
    source = Source(text)
    report = Reporter(source)
    program = parse(source, report)
    if report.has_errors or program.header is None:
        raise MutationError("the program has syntax errors: " + "; ".join(
            d.message for d in report.diagnostics if d.is_error))
    return program


# ------------------------------------------------------------------ the engine


@dataclass(frozen=True)
class Fingerprint:
    """What makes two valid programs different candidates: the graph, or a default; and which
    stability facts the compiler could not prove (warning codes LA5xx)."""

    ok: bool
    hash: str | None
    defaults: tuple[tuple[str, str], ...]
    unproven: frozenset[str] = frozenset()


def fingerprint(text: str) -> Fingerprint:
    """Whether a program checks clean, its structural hash and its hyper-parameter defaults."""
    result = analysis(text)
    module = result.module
    defaults = tuple((n.name, repr(n.attr("default"))) for _, n in module.hparams()) \
        if module is not None else ()
    h = structural_hash(module) if result.ok and module is not None else None
    unproven = frozenset(d.code for d in result.diagnostics if d.code.startswith("LA5"))
    return Fingerprint(result.ok, h, defaults, unproven)


def apply(operator: str, program: ast.Program, rng: random.Random,
          view: View | None = None) -> tuple[str, str] | None:
    """One operator on a program: (its pruned result printed, the description), or None."""
    edit = OPERATORS[operator](view or View(program), rng)
    if edit is None:
        return None
    return format_program(prune(edit.program)), edit.description


def _accept(text: str, before: Sequence[Fingerprint]) -> bool:
    fp = fingerprint(text)
    proven_before = frozenset().union(*(b.unproven for b in before))
    return fp.ok and fp.unproven <= proven_before and all(
        fp.hash != b.hash or fp.defaults != b.defaults for b in before)


def mutate(source: str, seed: int, *, max_tries: int = 30,
           operators: Sequence[str] | None = None) -> Mutation:
    """One random typed mutation of a program that checks clean and changes the architecture
    (or a hyper-parameter default); deterministic in ``seed``. ``operators`` restricts the
    choice to some names of ``OPERATORS`` (an ablation of the move set)."""
    unknown = set(operators or ()) - set(OPERATORS)
    if unknown:
        raise ValueError(f"unknown mutation operators: {', '.join(sorted(unknown))}")
    program = parse_program(source)
    view = View(program)
    before = [fingerprint(source)]
    rng = random.Random(seed)
    pool = list(operators if operators is not None else OPERATORS)
    tries = 0
    while pool and tries < max_tries:
        name = rng.choice(pool)
        out = apply(name, program, rng, view)
        if out is None:
            pool.remove(name)
            continue
        tries += 1
        if _accept(out[0], before):
            return Mutation(out[0], (name,), out[1], tries)
    raise MutationError(f"no valid mutation of {program.header.name} in {tries} tries "
                        f"({'no operator applies' if not pool else 'all were rejected'})")


def crossover(a: str, b: str, seed: int, *, max_tries: int = 30) -> Mutation:
    """Program ``a`` with one binding (or the return) defined as in program ``b``, with the
    parameters, hyper-parameters and helper bindings that definition needs copied over."""
    pa, pb = parse_program(a), parse_program(b)
    va, vb = View(pa), View(pb)
    before = [fingerprint(a), fingerprint(b)]
    shared = [n for n in (*va.assigns, *va.updates) if n in vb.assigns or n in vb.updates]
    shared += ["return"]
    rng = random.Random(seed)
    rng.shuffle(shared)
    tries = 0
    for name in shared:
        if tries >= max_tries:
            break
        edit = _cross(va, vb, name)
        if edit is None:
            continue
        tries += 1
        text = format_program(prune(edit.program))
        if _accept(text, before):
            return Mutation(text, ("crossover",), edit.description, tries)
    raise MutationError(f"no valid crossover of {pa.header.name} with {pb.header.name} "
                        f"in {tries} tries")


def _defining(view: View, name: str) -> list[int]:
    if name == "return":
        return [i for i, s in enumerate(view.stmts) if isinstance(s, ast.Return)]
    return view.updates.get(name) or ([view.assigns[name]] if name in view.assigns else [])


class _Importer:
    """Copies what an expression of program b reads into a draft of program a: the
    hyper-parameters, parameters and helper bindings a lacks, under fresh names where a uses
    the name already. A binding a has under the same name is a's (b's `k` reads a's `k`);
    a parameter a has with the same constructor is shared. With `own=True` (recombination)
    b's parameters and per-token values all come along under their own names, and only static
    formulas (the head count, the widths) are a's, so the shapes still agree."""

    def __init__(self, va: View, vb: View, d: Draft, *, own: bool = False) -> None:
        self.va, self.vb, self.d = va, vb, d
        self.own = own
        self.rename: dict[str, str] = {}
        self.copied: list[ast.Stmt] = []
        self.done: set[str] = set()

    def need(self, expr) -> bool:
        """Copy what `expr` reads from b that a lacks; False if that is impossible."""
        va, vb, d = self.va, self.vb, self.d
        for ref in refs(expr):
            if ref in self.done or ref in BUILTINS or ref in RESERVED_VALUES:
                continue
            self.done.add(ref)
            if ref in vb.hparams:
                if ref not in va.hparams:
                    self.rename[ref] = d.fresh(ref)
                    d.hparams.append(replace(vb.hparams[ref], name=self.rename[ref]))
            elif ref in vb.params:
                ctor = vb.stmts[vb.params[ref]].ctor
                if not self.own and ref in va.params and format_expr(
                        va.stmts[va.params[ref]].ctor) == format_expr(ctor):
                    continue
                if not self.need(ctor):
                    return False
                self.rename[ref] = d.fresh(ref)
                d.params.append(ast.ParamDecl((self.rename[ref],), ctor))
            elif ref in vb.assigns and (ref not in va.assigns
                                        or (self.own and ref in vb.token_values)):
                value = vb.value(ref)
                if not self.need(value):
                    return False
                self.rename[ref] = d.fresh(ref)
                self.copied.append(ast.Assign(self.rename[ref], value))
            elif ref in vb.states and ref not in va.states:
                return False
        return True

    def renamed(self, s: ast.Stmt) -> ast.Stmt:
        rename = self.rename

        def fn(e):
            if isinstance(e, ast.Name) and e.id in rename:
                return ast.Name(rename[e.id])
            if isinstance(e, ast.Call) and e.func in rename:
                return replace(e, func=rename[e.func], args=tuple(rewrite(x, fn) for x in e.args))
            return None

        if isinstance(s, ast.StateDecl):
            return replace(s, name=rename.get(s.name, s.name),
                           shape=tuple(rewrite(x, fn) for x in s.shape))
        if isinstance(s, ast.Assign) and s.name in rename:
            s = replace(s, name=rename[s.name])
        return map_stmt(s, fn)

    def finish(self) -> None:
        self.d.params = [self.renamed(p) for p in self.d.params]


def _cross(va: View, vb: View, name: str) -> Edit | None:
    ia, ib = _defining(va, name), _defining(vb, name)
    if len(ia) != 1 or len(ib) != 1:
        return None
    target, donor = va.stmts[ia[0]], vb.stmts[ib[0]]
    if format_stmt(target) == format_stmt(donor):
        return None
    d = Draft(va)
    imp = _Importer(va, vb, d)
    if not imp.need(donor.value):
        return None
    imp.finish()
    where = va.stmts.index(va.states[name]) if name in va.states else ia[0]
    d.insert_before(where, *(imp.renamed(s) for s in imp.copied))
    d.set(ia[0], imp.renamed(donor))
    what = "the return" if name == "return" else f"`{name}`"
    return d.build(f"Take {what} from {vb.program.header.name}: "
                   f"{format_stmt(imp.renamed(donor))}.")


def recombine(a: str, b: str, seed: int, *, max_tries: int = 30) -> Mutation:
    """Program ``a`` with a state of program ``b`` added as a second memory: b's state, its
    updates, its readout and the keys, values, rates and gates they read, with weights of its
    own (a's static formulas, the heads and widths, are shared so that the shapes agree); the
    two readouts are added."""
    pa, pb = parse_program(a), parse_program(b)
    va, vb = View(pa), View(pb)
    before = [fingerprint(a), fingerprint(b)]
    pairs = [(ra, rb) for ra in va.readouts() for rb in vb.readouts()]
    rng = random.Random(seed)
    rng.shuffle(pairs)
    tries = 0
    for ra, rb in pairs:
        if tries >= max_tries:
            break
        edit = _recombined(va, vb, ra, rb)
        if edit is None:
            continue
        tries += 1
        text = format_program(prune(edit.program))
        if _accept(text, before):
            return Mutation(text, ("recombine",), edit.description, tries)
    raise MutationError(f"no valid recombination of {pa.header.name} with {pb.header.name} "
                        f"in {tries} tries")


def _recombined(va: View, vb: View, ra: tuple, rb: tuple) -> Edit | None:
    line_a, out_a, state_a, _ = ra
    line_b, out_b, state_b, _ = rb
    updates = vb.updates.get(state_b, [])
    if not updates or state_b not in vb.states:
        return None
    d = Draft(va)
    imp = _Importer(va, vb, d, own=True)
    new_state = d.fresh(state_b)
    imp.rename[state_b] = new_state
    imp.done.add(state_b)
    decl = vb.states[state_b]
    readout = vb.stmts[line_b]
    if not all(imp.need(e) for e in decl.shape) or not all(
            imp.need(vb.stmts[i].value) for i in updates) or not imp.need(readout.value):
        return None
    out_new = d.fresh(out_b)
    imp.rename[out_b] = out_new
    total = d.fresh(f"{out_a}_sum")
    imp.finish()
    d.insert_before(line_a, *(imp.renamed(s) for s in imp.copied), imp.renamed(decl),
                    *(imp.renamed(vb.stmts[i]) for i in updates), imp.renamed(readout))
    d.insert_after(line_a, ast.Assign(total, ast.Binary("+", ast.Name(out_a),
                                                        ast.Name(out_new))))
    for j in range(line_a + 1, len(va.stmts)):
        stmt = d.get(j)
        if not isinstance(stmt, ast.StateDecl):
            d.set(j, map_stmt(stmt, lambda e: ast.Name(total) if e == ast.Name(out_a) else None))
    return d.build(f"Add {vb.program.header.name}'s state {state_b} as a second memory "
                   f"{new_state} beside {state_a}, read as {out_new} and added to {out_a}.")
