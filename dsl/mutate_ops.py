"""The mutation operators: each a small function ``(View, Random) -> Edit | None``.

An operator returns None where it does not apply; where it applies, its edit is meant to check
clean (tests/test_mutate.py holds every operator to that on every example), and the engine in
``linarch.dsl.mutate`` checks again anyway. Families: gate kinds, transition class, paths and
routers, convolution widths, feature maps, norms and output gates; ``mutate_moves`` adds short
convolutions, numeric constants and hyper-parameters, Householder micro-steps and a second
state.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from linarch.dsl import syntax as ast
from linarch.dsl.mutate_tree import (
    Draft,
    Edit,
    Update,
    View,
    flatten,
    is_call,
    join,
    map_stmt,
    parse_expr,
    parse_stmt,
    paste,
    refs,
    stmt_exprs,
    walk,
)
from linarch.dsl.params import PARAM_KINDS
from linarch.dsl.printer import format_expr

# ------------------------------------------------------------------ gates

GATE_FORMS = ("logsigmoid", "mamba")


def _gate_form(view: View, log) -> str:
    definition = view.value(log.id) if isinstance(log, ast.Name) else None
    funcs = {n.func for n in walk(definition if definition is not None else log)
             if isinstance(n, ast.Call)}
    if "logsigmoid" in funcs:
        return "logsigmoid"
    return "mamba" if "softplus" in funcs else "other"


GATE_RANK = 16  # per-channel gates project through a low rank, as GLA's and KDA's do


def _new_gate(d: Draft, form: str, dims: tuple[str, str, str], channel: bool):
    """A fresh log-decay <= 0, per head or per key channel, with its own weights."""
    heads, _, dk = dims
    width = f"{heads} * {dk}" if channel else heads
    view_as = f" as [{heads}, {dk}]" if channel else ""
    rank = GATE_RANK if channel else None
    if form == "logsigmoid":
        proj = d.projection("gk_proj", width, low_rank=rank, bias=True)
        return parse_expr(f"logsigmoid({proj}{view_as}) / 16")
    a_log = d.param("A_log", f'weight({heads}, init = "a_log")')
    dt_bias = d.param("dt_bias", f'weight({width}, init = "dt_bias")')
    proj = d.projection("a_proj", width, low_rank=rank)
    return parse_expr(f"-exp({a_log}) * softplus(({proj} + {dt_bias}){view_as})")


def _describe_gate(form: str) -> str:
    return ("the form logsigmoid(.) / 16" if form == "logsigmoid"
            else "the Mamba form -exp(A_log) * softplus(a + dt_bias)")


def add_scalar_gate(view: View, rng: random.Random) -> Edit | None:
    """A data-dependent per-head decay exp(g) * S on a state that has no decay."""
    sites = [u for s in view.updates if (u := view.decompose(view.updates[s][0])) is not None
             and not view.has_decay(u) and view.dims(s) is not None]
    if not sites or "hidden_size" not in view.hparams:
        return None
    u = rng.choice(sites)
    d = Draft(view)
    form = rng.choice(GATE_FORMS)
    g = d.fresh("g")
    d.insert_before(view.stmts.index(view.states[u.state]),
                    ast.Assign(g, _new_gate(d, form, view.dims(u.state), channel=False)))
    d.set(u.index, replace(u, scalars=(parse_expr(f"exp({g})"),)).stmt())
    return d.build(f"Add a data-dependent per-head decay exp({g}) in front of state {u.state}, "
                   f"with {g} in {_describe_gate(form)}.")


def _gate_sites(view: View) -> list[tuple[Update, str, int, object]]:
    """(update, "scalar" | "channel", position, log-decay) for each exp(.) decay of a state."""
    sites = []
    for u in view.all_updates():
        sites += [(u, "scalar", k, view.exp_arg(u, s)) for k, s in enumerate(u.scalars)
                  if view.exp_arg(u, s) is not None]
        sites += [(u, "channel", k, view.exp_arg(u, f)) for k, f in enumerate(u.factors)
                  if is_call(f, "diag") and view.exp_arg(u, f) is not None]
    return [s for s in sites if view.dims(s[0].state) is not None]


def switch_gate_form(view: View, rng: random.Random) -> Edit | None:
    """A decay rewritten between logsigmoid(.) / 16 and the Mamba form, with new weights."""
    sites = _gate_sites(view)
    if not sites or "hidden_size" not in view.hparams:
        return None
    u, kind, k, log = rng.choice(sites)
    old = _gate_form(view, log)
    form = "mamba" if old == "logsigmoid" else "logsigmoid"
    d = Draft(view)
    gate = _new_gate(d, form, view.dims(u.state), channel=kind == "channel")
    if isinstance(log, ast.Name) and log.id in view.assigns:
        d.set(view.assigns[log.id], ast.Assign(log.id, gate))
        name = log.id
    else:
        name = d.fresh("g")
        d.insert_before(view.stmts.index(view.states[u.state]), ast.Assign(name, gate))
        new = parse_expr(f"exp({name})")
        if kind == "scalar":
            u = replace(u, scalars=u.scalars[:k] + (new,) + u.scalars[k + 1:])
        else:
            u = replace(u, factors=u.factors[:k] + (parse_expr(f"diag({paste(new)})"),)
                        + u.factors[k + 1:])
        d.set(u.index, u.stmt())
    was = f"exp({format_expr(log)})" if old == "other" else f"{_describe_gate(old)}"
    return d.build(f"Switch the decay of state {u.state} from {was} to "
                   f"{_describe_gate(form)}, with new weights.")


def _regate(view: View, rng: random.Random, kind: str, name: str):
    """A random `kind` ("scalar" or "channel") decay site and a new gate of the other kind, in
    the same form, assigned to a fresh `name` just before the state: (draft, update, index of the
    old factor, new name, form), or None where the program has no such site."""
    sites = [s for s in _gate_sites(view) if s[1] == kind]
    if not sites or "hidden_size" not in view.hparams:
        return None
    u, _, k, log = rng.choice(sites)
    form = _gate_form(view, log)
    form = form if form in GATE_FORMS else "logsigmoid"
    d = Draft(view)
    var = d.fresh(name)
    d.insert_before(view.stmts.index(view.states[u.state]),
                    ast.Assign(var, _new_gate(d, form, view.dims(u.state),
                                              channel=kind == "scalar")))
    return d, u, k, var, form


def scalar_to_channel_gate(view: View, rng: random.Random) -> Edit | None:
    """A per-head decay exp(g) * S made per key channel: S @ diag(exp(gk))."""
    found = _regate(view, rng, "scalar", "gk")
    if found is None:
        return None
    d, u, k, gk, form = found
    u = replace(u, scalars=u.scalars[:k] + u.scalars[k + 1:],
                factors=(parse_expr(f"diag(exp({gk}))"),) + u.factors)
    d.set(u.index, u.stmt())
    return d.build(f"Turn the per-head decay of state {u.state} into a per-key-channel one, "
                   f"S @ diag(exp({gk})), with {gk} in {_describe_gate(form)}.")


def channel_to_scalar_gate(view: View, rng: random.Random) -> Edit | None:
    """A per-key-channel decay S @ diag(exp(gk)) made per head: exp(g) * S."""
    found = _regate(view, rng, "channel", "g")
    if found is None:
        return None
    d, u, k, g, form = found
    u = replace(u, scalars=(parse_expr(f"exp({g})"), *u.scalars),
                factors=u.factors[:k] + u.factors[k + 1:])
    d.set(u.index, u.stmt())
    return d.build(f"Replace the per-key-channel decay of state {u.state} by a per-head one, "
                   f"exp({g}) * S, with {g} in {_describe_gate(form)}.")


# ------------------------------------------------------------------ transition class


def add_delta_rule(view: View, rng: random.Random) -> Edit | None:
    """The delta rule on a decay-only state: erase along its (now unit) key before writing."""
    sites = []
    for state, indices in view.updates.items():
        u = view.decompose(indices[0])
        if (len(indices) != 1 or u is None or len(u.writes) != 1 or view.dims(state) is None
                or any(not is_call(f, "diag") or view.exp_arg(u, f) is None for f in u.factors)):
            continue
        call = view.outer_call(u, u.writes[0])
        key = call.args[1] if call else None
        if (isinstance(key, ast.Name) and key.id in view.assigns
                and len(view.shapes.get(key.id, ())) == 2):
            sites.append((u, key.id))
    if not sites or "hidden_size" not in view.hparams:
        return None
    u, key = rng.choice(sites)
    d = Draft(view)
    heads = view.dims(u.state)[0]
    rate = d.fresh("beta")
    proj = d.param("b_proj", f"linear(hidden_size -> {heads})")
    d.insert_before(view.stmts.index(view.states[u.state]),
                    ast.Assign(rate, parse_expr(f"sigmoid({proj}(x))")))
    key_def = view.value(key)
    if not is_call(key_def, "l2norm"):
        d.set(view.assigns[key], ast.Assign(key, parse_expr(f"l2norm({paste(key_def)})")))
    u = replace(u, factors=(*u.factors, parse_expr(f"I - {rate} * outer({key}, {key})")),
                writes=(parse_expr(f"{rate} * {paste(u.writes[0])}"),))
    d.set(u.index, u.stmt())
    return d.build(f"Add the delta rule to state {u.state}: erase along the unit key {key} at a "
                   f"new rate {rate} = sigmoid({proj}(x)) before writing.")


def remove_delta_rule(view: View, rng: random.Random) -> Edit | None:
    """One delta-rule factor I - beta * outer(k, k) dropped, with its rate on the write."""
    sites = [(u, k) for u in view.all_updates() for k, f in enumerate(u.factors)
             if view.is_delta(u, f)]
    if not sites:
        return None
    u, k = rng.choice(sites)
    rates, outer = view.rank_one(u, u.factors[k])
    writes = []
    for w in u.writes:
        parts = flatten(w, "*")
        kept = [p for p in parts if p not in rates]
        writes.append(join(kept, "*") if kept and len(kept) == len(parts) - len(rates) else w)
    d = Draft(view)
    d.set(u.index, replace(u, factors=u.factors[:k] + u.factors[k + 1:],
                           writes=tuple(writes)).stmt())
    return d.build(f"Remove the delta rule from state {u.state}: drop the erase term "
                   f"I - rate * {format_expr(outer)} and write without the rate.")


def toggle_delta_rate(view: View, rng: random.Random) -> Edit | None:
    """A delta rule's learned writing rate taken out (beta = 1: each token overwrites its key's
    slot completely) or, on a delta rule without one, put in: beta = sigmoid(b_proj(x)) on the
    erase term and on the write, DeltaNet's form."""
    sites = []
    for u in view.all_updates():
        for k, f in enumerate(u.factors):
            found = view.rank_one(u, f) if view.is_delta(u, f) else None
            if found is not None and found[1] is not None and view.dims(u.state) is not None:
                sites.append((u, k, found[0], found[1]))
    if not sites:
        return None
    u, k, rates, outer = rng.choice(sites)
    d = Draft(view)
    if rates:
        writes = []
        for w in u.writes:
            kept = [p for p in flatten(w, "*") if p not in rates]
            writes.append(join(kept, "*") if kept else w)
        factor = parse_expr(f"I - {paste(outer)}")
        d.set(u.index, replace(u, factors=u.factors[:k] + (factor,) + u.factors[k + 1:],
                               writes=tuple(writes)).stmt())
        return d.build(f"Take the writing rate out of state {u.state}'s delta rule: erase "
                       f"with I - {format_expr(outer)} and write in full (beta = 1).")
    if "hidden_size" not in view.hparams:
        return None
    rate = d.fresh("beta")
    proj = d.param("b_proj", f"linear(hidden_size -> {view.dims(u.state)[0]})")
    d.insert_before(view.stmts.index(view.states[u.state]),
                    ast.Assign(rate, parse_expr(f"sigmoid({proj}(x))")))
    factor = parse_expr(f"I - {rate} * {paste(outer)}")
    writes = tuple(parse_expr(f"{rate} * {paste(w)}") for w in u.writes)
    d.set(u.index, replace(u, factors=u.factors[:k] + (factor,) + u.factors[k + 1:],
                           writes=writes).stmt())
    return d.build(f"Give state {u.state}'s delta rule a learned writing rate {rate} = "
                   f"sigmoid({proj}(x)) on the erase term and the write (DeltaNet's beta).")


def _rate_site(view: View, name: str, depth: int = 3) -> str | None:
    """The binding that defines a delta rate as sigmoid(.) or 2 * sigmoid(.), through slices."""
    value = view.value(name)
    if value is None or depth == 0:
        return None
    if is_call(value, "sigmoid") or (
        isinstance(value, ast.Binary) and value.op == "*" and value.left == ast.Num(2, "2")
        and is_call(value.right, "sigmoid")
    ):
        return name
    if is_call(value, "slice") and isinstance(value.args[0], ast.Name):
        return _rate_site(view, value.args[0].id, depth - 1)
    return None


def toggle_negative_eigenvalues(view: View, rng: random.Random) -> Edit | None:
    """A delta-rule rate switched between sigmoid (in [0, 1]) and 2 * sigmoid."""
    sites = []
    for u in view.all_updates():
        for f in u.factors:
            if view.is_delta(u, f):
                for r in view.rank_one(u, f)[0]:
                    site = _rate_site(view, r.id) if isinstance(r, ast.Name) else None
                    if site is not None and site not in sites:
                        sites.append(site)
    if not sites:
        return None
    name = rng.choice(sites)
    value = view.value(name)
    d = Draft(view)
    if is_call(value, "sigmoid"):
        d.set(view.assigns[name], ast.Assign(name, parse_expr(f"2 * {paste(value)}")))
        return d.build(f"Allow negative eigenvalues: widen the delta-rule rate {name} from "
                       f"[0, 1] to [0, 2] with {name} = 2 * sigmoid(.).")
    d.set(view.assigns[name], ast.Assign(name, value.right))
    return d.build(f"Keep the delta-rule rate {name} in [0, 1] (sigmoid instead of 2 * sigmoid), "
                   "so the transition has no negative eigenvalues.")


# ------------------------------------------------------------------ paths

FIR_WIDTHS = (3, 4, 7, 15, 31)


def _stacks(view: View) -> list[tuple[str, ast.Call, object]]:
    """(paths binding, its stack call, the mix weights) for each ``mix(paths, w)``."""
    out = []
    for name, i in view.assigns.items():
        value = view.stmts[i].value
        if not is_call(value, "stack"):
            continue
        for s in view.stmts:
            for n in (n for e in stmt_exprs(s) for n in walk(e)):
                if is_call(n, "mix") and len(n.args) == 2 and n.args[0] == ast.Name(name):
                    out.append((name, value, n.args[1]))
    return out


def _reach(view: View, roots: list[str], stop: set[str] = frozenset()) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in stop:
            continue
        seen.add(name)
        if name in view.assigns:
            todo.extend(refs(view.stmts[view.assigns[name]].value))
        if name in view.params:
            todo.extend(refs(view.stmts[view.params[name]].ctor))
    return seen


def _rescale_router(d: Draft, paths: str, stack: ast.Call, weights, n: int, m: int) -> None:
    """Numbers of paths in the router (widths, reshapes, floors): multiples of n become of m."""
    view = d.view
    inputs = _reach(view, [r for a in stack.args for r in refs(a)])
    cone = _reach(view, refs(weights), stop=inputs | {paths})

    def scale(e):
        if isinstance(e, ast.Num) and isinstance(e.value, int) and e.value >= n and \
                e.value % n == 0:
            v = e.value // n * m
            return ast.Num(v, str(v))
        return None

    for i in sorted({view.assigns.get(c, view.params.get(c)) for c in cone} - {None}):
        if isinstance(view.stmts[i], (ast.Assign, ast.ParamDecl)):
            d.set(i, map_stmt(d.get(i), scale))


def _value_path(view: View, readout: str):
    """The value vector written into the state that ``readout`` reads (a binding name)."""
    i = view.assigns[readout]
    state = next(s for line, b, s, _ in view.readouts() if line == i and b == readout)
    u = view.decompose(view.updates[state][-1]) if state in view.updates else None
    for w in u.writes if u else ():
        call = view.outer_call(u, w)
        if call and isinstance(call.args[0], ast.Name) and call.args[0].id in view.assigns:
            return call.args[0].id
    return None


def add_fir_paths(view: View, rng: random.Random) -> Edit | None:
    """ASI-Arch paths: stack(o, fir(v), v) mixed by floored sigmoid gates around the readout."""
    if any(is_call(n, "stack", "mix") for s in view.stmts for e in stmt_exprs(s)
           for n in walk(e)) or "hidden_size" not in view.hparams:
        return None
    sites = []
    for i, o, state, _ in view.readouts():
        v = _value_path(view, o)
        if (v and view.dims(state) and len(view.shapes.get(o, ())) == 2
                and view.shapes.get(o) == view.shapes.get(v)):
            sites.append((i, o, v, state))
    if not sites:
        return None
    i, o, v, state = rng.choice(sites)
    heads, dv, _ = view.dims(state)
    d = Draft(view)
    width = rng.choice(FIR_WIDTHS)
    floor = d.hparam("gate_floor", 0.02)
    fir = d.param("fir", f'causal_conv({heads} * {dv}, width = {width}, init = "identity")')
    router = d.param("router", f"linear(hidden_size -> {heads} * 3)")
    paths, w, mixed = d.fresh("paths"), d.fresh("w"), d.fresh(f"{o}_mix")
    gates = f"sigmoid({router}(x) as [{heads}, 3])"
    d.insert_after(i, parse_stmt(f"{paths} = stack({o}, {fir}({v}), {v})"),
                   parse_stmt(f"{w} = {floor} + (1 - {floor}) * {gates}"),
                   parse_stmt(f"{mixed} = mix({paths}, {w})"))

    def rename(e):
        return ast.Name(mixed) if e == ast.Name(o) else None

    for k in range(i + 1, len(view.stmts)):
        d.set(k, map_stmt(d.get(k), rename) if not isinstance(d.get(k), ast.StateDecl)
              else d.get(k))
    return d.build(f"Fuse the memory readout {o} with two new paths, a FIR of width {width} over "
                   f"{v} and {v} itself, by per-head sigmoid gates with a floor (ASI-Arch style).")


def add_path(view: View, rng: random.Random) -> Edit | None:
    """One more FIR path in an existing stack; the router grows to match."""
    sites = []
    for paths, stack, weights in _stacks(view):
        readers = {b for _, b, _, _ in view.readouts()}
        values = [a.id for a in stack.args if isinstance(a, ast.Name) and a.id not in readers]
        if values and len(stack.args) < 8:
            sites.append((paths, stack, weights, values))
    if not sites:
        return None
    paths, stack, weights, values = rng.choice(sites)
    v = rng.choice(values)
    state = next(iter(view.states), None)
    if state is None or view.dims(state) is None:
        return None
    heads, dv, _ = view.dims(state)
    d = Draft(view)
    width = rng.choice(FIR_WIDTHS)
    fir = d.param("fir", f'causal_conv({heads} * {dv}, width = {width}, init = "identity")')
    n = len(stack.args)
    _rescale_router(d, paths, stack, weights, n, n + 1)
    i = view.assigns[paths]
    d.set(i, ast.Assign(paths, replace(stack, args=(*stack.args, parse_expr(f"{fir}({v})")))))
    return d.build(f"Add a path to {paths}: a FIR of width {width} over {v} ({n} -> {n + 1} "
                   "paths, router widened to match).")


def remove_path(view: View, rng: random.Random) -> Edit | None:
    """One path (not the memory readout) taken out of a stack; the router shrinks to match."""
    readers = {b for _, b, _, _ in view.readouts()} | set(view.states)
    sites = [(paths, stack, w, k) for paths, stack, w in _stacks(view) if len(stack.args) >= 3
             for k, a in enumerate(stack.args) if not readers & set(refs(a))]
    if not sites:
        return None
    paths, stack, weights, k = rng.choice(sites)
    n = len(stack.args)
    d = Draft(view)
    _rescale_router(d, paths, stack, weights, n, n - 1)
    d.set(view.assigns[paths], ast.Assign(paths, replace(stack, args=stack.args[:k]
                                                         + stack.args[k + 1:])))
    return d.build(f"Remove the path {format_expr(stack.args[k])} from {paths} ({n} -> {n - 1} "
                   "paths, router narrowed to match).")


def swap_router(view: View, rng: random.Random) -> Edit | None:
    """Path weights switched between a softmax and independent sigmoids, floors kept."""
    sites = []
    for paths, stack, weights in _stacks(view):
        inputs = _reach(view, [r for a in stack.args for r in refs(a)])
        for c in sorted(_reach(view, refs(weights), stop=inputs | {paths})):
            if c in view.assigns and any(is_call(n, "softmax", "sigmoid")
                                         for n in walk(view.value(c))):
                sites.append((c, len(stack.args), weights))
    if not sites:
        return None
    name, n, weights = rng.choice(sites)
    old = next(n.func for n in walk(view.value(name)) if is_call(n, "softmax", "sigmoid"))
    new = "sigmoid" if old == "softmax" else "softmax"
    d = Draft(view)
    swapped = [False]

    def swap(e):
        if is_call(e, old) and not swapped[0]:
            swapped[0] = True
            return replace(e, func=new, args=tuple(a for a in e.args
                                                   if not isinstance(a, ast.Keyword)))
        return None

    d.set(view.assigns[name], map_stmt(view.stmts[view.assigns[name]], swap))
    weight_defs = [view.assigns[weights.id]] if isinstance(weights, ast.Name) and \
        weights.id in view.assigns else []

    def floor(e):  # 1 - f  <->  1 - n * f: a softmax's floors must leave the weights summing to 1
        if isinstance(e, ast.Binary) and e.op == "-" and e.left == ast.Num(1, "1"):
            r = e.right
            if new == "softmax" and isinstance(r, ast.Name):
                return parse_expr(f"1 - {n} * {r.id}")
            if new == "sigmoid" and isinstance(r, ast.Binary) and r.op == "*" and \
                    r.left == ast.Num(n, str(n)) and isinstance(r.right, ast.Name):
                return parse_expr(f"1 - {r.right.id}")
        return None

    for i in weight_defs:
        d.set(i, map_stmt(d.get(i), floor))
    kind = "independent sigmoid gates" if new == "sigmoid" else "a softmax over paths"
    return d.build(f"Route the paths by {kind} instead of {old} (in {name}), keeping the floor.")


# ------------------------------------------------------------------ convolutions, features, norms

CONV_WIDTHS = (2, 3, 4, 5, 7, 8, 15, 31, 63)


def change_conv_width(view: View, rng: random.Random) -> Edit | None:
    """A causal convolution (or the hyper-parameter behind its width) made wider or narrower."""
    knobs: list[tuple[str, int | None, int, str]] = []  # (hparam or "", line, width, decls)
    for i, s in enumerate(view.stmts):
        if not (isinstance(s, ast.ParamDecl) and s.ctor.func == "causal_conv"):
            continue
        width = next((a.value for a in s.ctor.args if isinstance(a, ast.Keyword)
                      and a.name == "width"), ast.Num(4, "4"))
        if isinstance(width, ast.Name) and width.id in view.hparams:
            default = view.hparams[width.id].default.value
            if isinstance(default, int) and not any(k[0] == width.id for k in knobs):
                knobs.append((width.id, None, default, ""))
        elif isinstance(width, ast.Num) and isinstance(width.value, int):
            knobs.append(("", i, width.value, ", ".join(s.names)))
    if not knobs:
        return None
    hp, i, old, names = rng.choice(knobs)
    choices = [w for w in CONV_WIDTHS if w != old and old / 4 <= w <= old * 4]
    new = rng.choice(choices)
    d = Draft(view)
    if hp:
        header = view.program.header
        d.set(0, replace(header, hparams=tuple(
            replace(h, default=ast.Num(new, str(new))) if h.name == hp else h
            for h in header.hparams)))
        return d.build(f"Change the convolution width {hp} from {old} to {new}.")
    decl = view.stmts[i]
    args = tuple(a for a in decl.ctor.args
                 if not (isinstance(a, ast.Keyword) and a.name == "width"))
    d.set(i, replace(decl, ctor=replace(decl.ctor, args=(
        *args, ast.Keyword("width", ast.Num(new, str(new)))))))
    return d.build(f"Change the width of the convolution {names} from {old} to {new}.")


# feature maps of queries and keys: none, SiLU (fla's default), ReLU, ELU, 1 + ELU (positive,
# Katharopoulos et al. 2020), sigmoid and softplus (positive, bounded below)
FEATURE_ACTS = ("silu", "relu", "elu", "identity", "elu1", "sigmoid", "softplus")
_ACT_CALLS = ("silu", "swish", "relu", "elu", "sigmoid", "softplus")


def _features(view: View) -> list[str]:
    """Queries that read a state and keys (and values' keys) written into one, by name."""
    names = [q.id for _, _, _, q in view.readouts() if isinstance(q, ast.Name)]
    for u in view.all_updates():
        calls = [view.outer_call(u, w) for w in u.writes]
        calls += [r[1] for f in u.factors if (r := view.rank_one(u, f)) is not None]
        for call in calls:
            if call is not None and isinstance(call.args[1], ast.Name):
                names.append(call.args[1].id)
    return [n for n in dict.fromkeys(names) if n in view.assigns]


def _is_elu1(e) -> bool:
    return (isinstance(e, ast.Binary) and e.op == "+" and is_call(e.left, "elu")
            and len(e.left.args) == 1 and e.right == ast.Num(1, "1"))


def _feature_site(value) -> tuple[str, object, Callable]:
    """(the feature map's name, the expression it applies to, a function that puts a
    replacement for that expression back into the definition); l2norm and reshapes stay."""
    norm = is_call(value, "l2norm") and len(value.args) == 1
    inner = value.args[0] if norm else value

    def outside(e):
        return replace(value, args=(e,)) if norm else e

    body, put = inner, outside
    if isinstance(inner, ast.Reshape):
        body, put = inner.value, (lambda e: outside(replace(inner, value=e)))
    if _is_elu1(body):
        return "elu1", body.left.args[0], put
    if is_call(body, *_ACT_CALLS) and len(body.args) == 1:
        return ("silu" if body.func == "swish" else body.func), body.args[0], put
    return "identity", body, put


def _apply_map(name: str, arg):
    if name == "identity":
        return arg
    if name == "elu1":
        return ast.Binary("+", ast.Call("elu", (arg,)), ast.Num(1, "1"))
    return ast.Call(name, (arg,))


def swap_feature_activation(view: View, rng: random.Random) -> Edit | None:
    """The feature map of a query or key swapped among none, SiLU, ReLU, ELU, 1 + ELU, sigmoid
    and softplus."""
    names = _features(view)
    if not names:
        return None
    name = rng.choice(names)
    value = view.value(name)
    old, arg, put = _feature_site(value)
    new = rng.choice([a for a in FEATURE_ACTS if a != old])
    d = Draft(view)
    d.set(view.assigns[name], ast.Assign(name, put(_apply_map(new, arg))))
    return d.build(f"Change the feature map of {name} from {old} to {new}.")


def toggle_key_l2norm(view: View, rng: random.Random) -> Edit | None:
    """l2norm added to or dropped from a query or key that no transition factor uses."""
    erased = {r for u in view.all_updates() for f in u.factors for r in refs(f)}
    names = [n for n in _features(view) if n not in erased]
    if not names:
        return None
    name = rng.choice(names)
    value = view.value(name)
    d = Draft(view)
    if is_call(value, "l2norm") and len(value.args) == 1:
        d.set(view.assigns[name], ast.Assign(name, value.args[0]))
        return d.build(f"Drop the l2norm on {name}, so its length carries information.")
    d.set(view.assigns[name], ast.Assign(name, parse_expr(f"l2norm({paste(value)})")))
    return d.build(f"Normalise {name} to unit length with l2norm.")


def swap_output_norm(view: View, rng: random.Random) -> Edit | None:
    """rmsnorm <-> layernorm for a norm parameter."""
    sites = [i for i, s in enumerate(view.stmts) if isinstance(s, ast.ParamDecl)
             and s.ctor.func in ("rmsnorm", "layernorm")]
    if not sites:
        return None
    i = rng.choice(sites)
    decl = view.stmts[i]
    new = "layernorm" if decl.ctor.func == "rmsnorm" else "rmsnorm"
    allowed = dict(PARAM_KINDS[new].keywords)
    args = tuple(a for a in decl.ctor.args if not isinstance(a, ast.Keyword) or a.name in allowed)
    d = Draft(view)
    d.set(i, replace(decl, ctor=replace(decl.ctor, func=new, args=args)))
    return d.build(f"Use {new} instead of {decl.ctor.func} for the norm {', '.join(decl.names)}.")


def _output_gates(view: View) -> list[tuple[int, str | None, ast.Call]]:
    """(line, binding or None if inline, the call) for silu/sigmoid gates multiplied into the
    output."""
    sites = []
    for i, s in enumerate(view.stmts):
        if not isinstance(s, ast.Return):
            continue
        for n in walk(s.value):
            if not (isinstance(n, ast.Binary) and n.op == "*"):
                continue
            for side in (n.left, n.right):
                if is_call(side, "silu", "swish", "sigmoid"):
                    sites.append((i, None, side))
                elif isinstance(side, ast.Name) and is_call(view.value(side.id), "silu",
                                                              "swish", "sigmoid"):
                    sites.append((view.assigns[side.id], side.id, view.value(side.id)))
    return sites


def swap_output_gate(view: View, rng: random.Random) -> Edit | None:
    """The activation of the output gate swapped between silu and sigmoid."""
    sites = _output_gates(view)
    if not sites:
        return None
    i, name, call = rng.choice(sites)
    new = "sigmoid" if call.func in ("silu", "swish") else "silu"
    d = Draft(view)
    d.set(i, map_stmt(view.stmts[i], lambda e: replace(e, func=new) if e is call else None))
    what = f"the output gate {name}" if name else "the output gate"
    return d.build(f"Use {new} instead of {call.func} for {what}.")


def add_output_gate(view: View, rng: random.Random) -> Edit | None:
    """An output gate act(g_proj(x)) on the normalised readout where there is none."""
    if _output_gates(view) or "hidden_size" not in view.hparams:
        return None
    mixed = {n for n, i in view.assigns.items() if is_call(view.stmts[i].value, "mix")}
    readers = {b for _, b, _, _ in view.readouts() if len(view.shapes.get(b, ())) == 2}
    sites = []
    for i, s in enumerate(view.stmts):
        for n in walk(s.value) if isinstance(s, ast.Return) else ():
            if not (isinstance(n, ast.Call) and len(n.args) == 1 and n.func in view.params
                    and view.stmts[view.params[n.func]].ctor.func in ("rmsnorm", "layernorm")):
                continue
            arg = n.args[0]
            if is_call(arg, "mix") or isinstance(arg, ast.Name) and arg.id in readers | mixed:
                sites.append((i, n))
    state = next(iter(view.states), None)
    if not sites or state is None or view.dims(state) is None:
        return None
    i, norm = rng.choice(sites)
    heads, dv, _ = view.dims(state)
    d = Draft(view)
    act = rng.choice(("silu", "sigmoid"))
    proj = d.param("g_proj", f"linear(hidden_size -> {heads} * {dv})")
    gate = d.fresh("gate")
    d.insert_before(i, parse_stmt(f"{gate} = {act}({proj}(x) as [{heads}, {dv}])"))
    d.set(i, map_stmt(view.stmts[i], lambda e: parse_expr(f"{paste(e)} * {gate}") if e is norm
                       else None))
    return d.build(f"Gate the normalised output by {gate} = {act}({proj}(x)), as gated "
                   "DeltaNet does.")


# ------------------------------------------------------------------ the registry

Operator = Callable[[View, random.Random], Edit | None]

from linarch.dsl.mutate_moves import MOVES  # noqa: E402 - they use helpers defined above

OPERATORS: dict[str, Operator] = {
    f.__name__: f
    for f in (
        add_scalar_gate, switch_gate_form, scalar_to_channel_gate, channel_to_scalar_gate,
        add_delta_rule, remove_delta_rule, toggle_delta_rate, toggle_negative_eigenvalues,
        add_fir_paths, add_path, remove_path, swap_router,
        change_conv_width, swap_feature_activation, toggle_key_l2norm,
        swap_output_norm, swap_output_gate, add_output_gate, *MOVES,
    )
}
