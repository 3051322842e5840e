"""Typed mutations and crossover of programs: the search's move set when no LLM is available.

Each operator (``linarch.dsl.mutate_ops``) is a small function on the syntax tree that returns
an ``Edit`` (a new program and one sentence saying what changed) or None where it does not apply.
The engine picks applicable operators with a seeded ``random.Random``, drops what the edit left
unread (``prune``), prints the result with ``format_program`` and keeps it only if the front end
accepts it with no error and it is a different architecture (a new structural hash) or has a new
hyper-parameter default. Crossover moves one definition from a program into another. Nothing
here imports beyond the front end: mutation is a language service, like ``fmt``.
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
    """What makes two valid programs different candidates: the graph, or a default."""

    ok: bool
    hash: str | None
    defaults: tuple[tuple[str, str], ...]


def fingerprint(text: str) -> Fingerprint:
    """Whether a program checks clean, its structural hash and its hyper-parameter defaults."""
    result = analysis(text)
    module = result.module
    defaults = tuple((n.name, repr(n.attr("default"))) for _, n in module.hparams()) \
        if module is not None else ()
    h = structural_hash(module) if result.ok and module is not None else None
    return Fingerprint(result.ok, h, defaults)


def apply(operator: str, program: ast.Program, rng: random.Random,
          view: View | None = None) -> tuple[str, str] | None:
    """One operator on a program: (its pruned result printed, the description), or None."""
    edit = OPERATORS[operator](view or View(program), rng)
    if edit is None:
        return None
    return format_program(prune(edit.program)), edit.description


def _accept(text: str, before: Sequence[Fingerprint]) -> bool:
    fp = fingerprint(text)
    return fp.ok and all(fp.hash != b.hash or fp.defaults != b.defaults for b in before)


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


def _cross(va: View, vb: View, name: str) -> Edit | None:
    ia, ib = _defining(va, name), _defining(vb, name)
    if len(ia) != 1 or len(ib) != 1:
        return None
    target, donor = va.stmts[ia[0]], vb.stmts[ib[0]]
    if format_stmt(target) == format_stmt(donor):
        return None
    d = Draft(va)
    rename: dict[str, str] = {}
    copied: list[ast.Stmt] = []
    done: set[str] = set()

    def need(expr) -> bool:  # copy what expr reads from b that a lacks; False if impossible
        for ref in refs(expr):
            if ref in done or ref in BUILTINS or ref in RESERVED_VALUES:
                continue
            done.add(ref)
            if ref in vb.hparams:
                if ref not in va.hparams:
                    rename[ref] = d.fresh(ref)
                    d.hparams.append(replace(vb.hparams[ref], name=rename[ref]))
            elif ref in vb.params:
                ctor = vb.stmts[vb.params[ref]].ctor
                if ref in va.params and format_expr(va.stmts[va.params[ref]].ctor) == \
                        format_expr(ctor):
                    continue
                if not need(ctor):
                    return False
                rename[ref] = d.fresh(ref)
                d.params.append(ast.ParamDecl((rename[ref],), ctor))
            elif ref in vb.assigns and ref not in va.assigns:
                value = vb.value(ref)
                if not need(value):
                    return False
                rename[ref] = d.fresh(ref)
                copied.append(ast.Assign(rename[ref], value))
            elif ref in vb.states and ref not in va.states:
                return False
        return True

    if not need(donor.value):
        return None

    def renamed(s: ast.Stmt) -> ast.Stmt:
        def fn(e):
            if isinstance(e, ast.Name) and e.id in rename:
                return ast.Name(rename[e.id])
            if isinstance(e, ast.Call) and e.func in rename:
                return replace(e, func=rename[e.func], args=tuple(rewrite(x, fn) for x in e.args))
            return None

        return map_stmt(s, fn)

    d.params = [renamed(p) for p in d.params]
    where = va.stmts.index(va.states[name]) if name in va.states else ia[0]
    d.insert_before(where, *(renamed(s) for s in copied))
    d.set(ia[0], renamed(donor))
    what = "the return" if name == "return" else f"`{name}`"
    return d.build(f"Take {what} from {vb.program.header.name}: "
                   f"{format_stmt(renamed(donor))}.")
