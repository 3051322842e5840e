"""Mutation operators that grow or tune the recurrence: short convolutions on q/k/v, numeric
constants and hyper-parameters, Householder micro-steps, a second state with its readout.

These read what the compiler proved about each state from the transitions pass
(``View.transitions``: the class, the rank-one factors, the write terms, the micro-steps) and
the IR, never by taking update statements apart themselves, so they follow the compiler's own
reading of a program. Each is ``(View, Random) -> Edit | None`` like those of
``mutate_ops`` (which registers them); the engine checks every result again.
"""

from __future__ import annotations

import random
from dataclasses import replace

from linarch.dsl import syntax as ast
from linarch.dsl.ir import Op
from linarch.dsl.mutate_tree import (
    Draft,
    Edit,
    View,
    is_call,
    map_stmt,
    parse_stmt,
    refs,
    stmt_exprs,
    walk,
)

# keywords the model around a mixer sets itself (fla's model configs pass them to the layer):
# tuning their defaults changes nothing that is trained
SET_BY_BACKBONE = frozenset({"hidden_size", "num_heads", "head_dim"})
ACTIVATIONS = frozenset({"silu", "swish", "relu", "elu", "gelu", "sigmoid", "tanh", "softplus"})


# ------------------------------------------------------------------ what the compiler proved


def _bound_name(view: View, node_id: int) -> str | None:
    """The binding a node's value is known by (following aliases), if it has one."""
    m = view.unit.module
    while True:
        node = m.node(node_id)
        if node.name and node.name in view.assigns:
            return node.name
        if node.op is Op.ALIAS:
            node_id = node.args[0]
            continue
        return None


def _outer_args(view: View, node_id: int) -> list[tuple[int, int]]:
    """(first, second) operands of the outer(.) products inside a write term."""
    m = view.unit.module
    out, todo = [], [node_id]
    while todo:
        node = m.node(todo.pop())
        if node.op is Op.CALL and node.attr("fn") == "outer":
            out.append((node.args[0], node.args[1]))
        elif node.op in (Op.BINARY, Op.NEG):
            todo.extend(node.args)
    return out


def state_inputs(view: View) -> dict[str, dict[str, set[str]]]:
    """State -> {"key", "value", "query"} -> binding names, from the transitions pass (write
    terms and rank-one factors) and the readouts `S @ q` of the IR."""
    if view.unit is None:
        return {}
    out: dict[str, dict[str, set[str]]] = {}
    for name, t in view.transitions.items():
        roles: dict[str, set[str]] = {"key": set(), "value": set(), "query": set()}
        for w in t.writes:
            for v, k in _outer_args(view, w.term):
                roles["value"].add(_bound_name(view, v) or "")
                roles["key"].add(_bound_name(view, k) or "")
        for r in t.rank_ones:
            roles["key"].update(_bound_name(view, o.node) or "" for o in r.u + r.w)
        for read in t.reads:
            roles["query"].update(_bound_name(view, o.node) or "" for o in read.query)
        out[name] = {role: names - {""} for role, names in roles.items()}
    return out


# ------------------------------------------------------------------ short convolutions


def _projection_calls(view: View, name: str, depth: int = 2) -> list[tuple[str, ast.Call]]:
    """(binding, call) for each linear projection of x, `p(x)`, inside a binding's definition,
    looking through bindings it reads (`q = f(q0)`, `q0 = q_proj(x) as [H, d]`)."""
    value = view.value(name)
    if value is None or depth == 0:
        return []
    found = []
    for n in walk(value):
        if (isinstance(n, ast.Call) and n.func in view.params and len(n.args) == 1
                and n.args[0] == ast.Name("x")
                and view.stmts[view.params[n.func]].ctor.func == "linear"):
            found.append((name, n))
        elif isinstance(n, ast.Name) and n.id in view.assigns:
            found += _projection_calls(view, n.id, depth - 1)
    return found


def _convolved(view: View, name: str, depth: int = 2) -> bool:
    value = view.value(name)
    if value is None or depth == 0:
        return False
    for n in walk(value):
        if isinstance(n, ast.Call) and n.func in view.params and \
                view.stmts[view.params[n.func]].ctor.func == "causal_conv":
            return True
        if isinstance(n, ast.Name) and n.id in view.assigns and _convolved(view, n.id, depth - 1):
            return True
    return False


def _qkv(view: View) -> list[tuple[str, str]]:
    """(role, binding) of every query, key and value a state reads or writes."""
    seen: dict[str, str] = {}
    for roles in state_inputs(view).values():
        for role in ("query", "key", "value"):
            for name in sorted(roles[role]):
                seen.setdefault(name, role)
    return [(role, name) for name, role in seen.items()]


def add_short_conv(view: View, rng: random.Random) -> Edit | None:
    """A short causal convolution (fla's ShortConvolution: width 4, then SiLU where nothing
    else activates) on the projection behind a query, key or value that has none."""
    sites = []
    for role, name in _qkv(view):
        if _convolved(view, name):
            continue
        calls = _projection_calls(view, name)
        if len(calls) == 1:
            sites.append((role, name, *calls[0]))
    if not sites:
        return None
    role, name, holder, call = rng.choice(sites)
    ctor = view.stmts[view.params[call.func]].ctor
    channels = ctor.args[0].items[-1] if isinstance(ctor.args[0], ast.Chain) else None
    if channels is None:
        return None
    from linarch.dsl.printer import format_expr

    d = Draft(view)
    width = "conv_size" if "conv_size" in view.hparams else "4"
    conv = d.param(f"{name}_conv1d", f"causal_conv({format_expr(channels)}, width = {width})")
    activated = any(is_call(n, *ACTIVATIONS) for n in walk(view.value(holder)))
    wrapped = ast.Call(conv, (call,))
    if not activated:
        wrapped = ast.Call("silu", (wrapped,))
    d.set(view.assigns[holder], map_stmt(view.stmts[view.assigns[holder]],
                                         lambda e: wrapped if e is call else None))
    act = "" if activated else ", then SiLU"
    return d.build(f"Add a short causal convolution (width {width}{act}) to the {role} {name}, "
                   f"over {call.func}(x).")


def remove_short_conv(view: View, rng: random.Random) -> Edit | None:
    """The short convolution over a query's, key's or value's projection taken out."""
    sites = []
    for role, name in _qkv(view):
        value = view.value(name)
        for holder in [name, *(n.id for n in walk(value) if isinstance(n, ast.Name)
                               and n.id in view.assigns)]:
            for n in walk(view.value(holder)):
                if (isinstance(n, ast.Call) and n.func in view.params and len(n.args) == 1
                        and view.stmts[view.params[n.func]].ctor.func == "causal_conv"
                        and isinstance(n.args[0], ast.Call) and n.args[0].args
                        and n.args[0].args[0] == ast.Name("x")):
                    sites.append((role, name, holder, n))
    if not sites:
        return None
    role, name, holder, conv = rng.choice(sites)
    d = Draft(view)
    d.set(view.assigns[holder], map_stmt(view.stmts[view.assigns[holder]],
                                         lambda e: conv.args[0] if e is conv else None))
    return d.build(f"Remove the short convolution {conv.func} from the {role} {name}.")


# ------------------------------------------------------------------ numeric constants


def _retuned(value: int | float, rng: random.Random) -> int | float | None:
    if isinstance(value, bool) or value in (0, 1):
        return None
    if isinstance(value, int):
        options = {value * 2, value // 2 if abs(value) >= 4 else value - 1, value + 1}
        options.discard(0)
        options.discard(value)
        return rng.choice(sorted(options)) if options else None
    factor = rng.choice((0.1, 10.0) if abs(value) < 1e-3 else (0.5, 2.0))
    return float(f"{value * factor:.6g}")


def _num(value: int | float) -> ast.Num:
    return ast.Num(value, str(value) if isinstance(value, int) else repr(value))


def tune_constant(view: View, rng: random.Random) -> Edit | None:
    """A numeric literal that scales a computed value (a gate's divisor in
    `logsigmoid(.) / 16`, a rate's bound in `2 * sigmoid(.)`, a constant inside a formula of
    token values) halved or doubled. Literals in static formulas (widths, counts of paths) are
    left alone, and the engine refuses a result whose stability the compiler no longer proves
    (a rate pushed past 2)."""
    sites = []
    for i, s in enumerate(view.stmts):
        if not isinstance(s, (ast.Assign, ast.Return, ast.LossDecl)):
            continue
        for n in walk(s.value):
            if not (isinstance(n, ast.Binary) and n.op in ("*", "/", "**")):
                continue
            for side, other in ((n.left, n.right), (n.right, n.left)):
                if (isinstance(side, ast.Num) and side.value not in (0, 1)
                        and any(isinstance(x, ast.Call) for x in walk(other))):
                    sites.append((i, side))
    if not sites:
        return None
    i, num = rng.choice(sites)
    new = _retuned(num.value, rng)
    if new is None:
        return None
    d = Draft(view)
    d.set(i, map_stmt(view.stmts[i], lambda e: _num(new) if e is num else None))
    where = view.stmts[i].name if isinstance(view.stmts[i], ast.Assign) else "the output"
    return d.build(f"Change the constant {num.text} in {where} to {_num(new).text}.")


def tune_hparam(view: View, rng: random.Random) -> Edit | None:
    """A numeric hyper-parameter the body reads (a conv width, an expansion, a floor, an
    epsilon; not the model width or heads, which the backbone sets) moved to a neighbour."""
    used = {r for s in view.stmts[1:] for e in stmt_exprs(s) for r in refs(e)}
    sites = [h for name, h in view.hparams.items()
             if name in used and name not in SET_BY_BACKBONE and isinstance(h.default, ast.Num)
             and not isinstance(h.default.value, bool)]
    if not sites:
        return None
    h = rng.choice(sites)
    new = _retuned(h.default.value, rng)
    if new is None:
        return None
    d = Draft(view)
    header = view.program.header
    d.set(0, replace(header, hparams=tuple(replace(x, default=_num(new)) if x.name == h.name
                                           else x for x in header.hparams)))
    return d.build(f"Change the hyper-parameter {h.name} from {h.default.text} to "
                   f"{_num(new).text}.")


# ------------------------------------------------------------------ micro-steps


def add_householder_step(view: View, rng: random.Random) -> Edit | None:
    """A second Householder micro-step after a delta-rule update, with its own key, value and
    rate (DeltaProduct with two steps per token)."""
    from linarch.dsl.passes.transitions import TClass

    sites = [s for s, t in view.transitions.items()
             if t.cls is TClass.DELTA and len(view.updates.get(s, ())) == 1
             and view.dims(s) is not None]
    if not sites or "hidden_size" not in view.hparams:
        return None
    state = rng.choice(sites)
    heads, dv, dk = view.dims(state)
    d = Draft(view)
    k2, v2, b2 = d.fresh("k2"), d.fresh("v2"), d.fresh("b2")
    kp = d.param(f"{k2}_proj", f"linear(hidden_size -> {heads} * {dk})")
    vp = d.param(f"{v2}_proj", f"linear(hidden_size -> {heads} * {dv})")
    bp = d.param(f"{b2}_proj", f"linear(hidden_size -> {heads})")
    d.insert_after(view.updates[state][-1],
                   parse_stmt(f"{k2} = l2norm(silu({kp}(x)) as [{heads}, {dk}])"),
                   parse_stmt(f"{v2} = {vp}(x) as [{heads}, {dv}]"),
                   parse_stmt(f"{b2} = sigmoid({bp}(x))"),
                   parse_stmt(f"{state} = {state} @ (I - {b2} * outer({k2}, {k2})) + "
                              f"{b2} * outer({v2}, {k2})"))
    return d.build(f"Add a second Householder micro-step to state {state}: erase along a new "
                   f"unit key {k2} and write {v2} at a new rate {b2} (DeltaProduct, 2 steps).")


def remove_householder_step(view: View, rng: random.Random) -> Edit | None:
    """The last micro-step of a state updated several times per token dropped."""
    sites = [s for s, indices in view.updates.items() if len(indices) >= 2
             and len(view.transitions.get(s).steps if s in view.transitions else ()) >= 2]
    if not sites:
        return None
    state = rng.choice(sites)
    d = Draft(view)
    d.remove(view.updates[state][-1])
    return d.build(f"Drop the last micro-step of state {state} ({len(view.updates[state])} -> "
                   f"{len(view.updates[state]) - 1} updates per token).")


# ------------------------------------------------------------------ a second state


def add_second_state(view: View, rng: random.Random) -> Edit | None:
    """A second memory beside a state: the same keys and values into a new state with a
    data-dependent per-head decay, read with the same query, added to the first readout."""
    from linarch.dsl.mutate_ops import GATE_FORMS, _describe_gate, _new_gate

    inputs = state_inputs(view)
    sites = []
    for line, o, state, _ in view.readouts():
        roles = inputs.get(state, {})
        keys, values = sorted(roles.get("key", ())), sorted(roles.get("value", ()))
        if (keys and values and view.dims(state) is not None and len(view.states) < 4
                and len(view.shapes.get(o, ())) == 2):
            sites.append((line, o, state, keys[0], values[0]))
    if not sites or "hidden_size" not in view.hparams:
        return None
    line, o, state, k, v = rng.choice(sites)
    d = Draft(view)
    form = rng.choice(GATE_FORMS)
    s2, g2, o2, total = d.fresh(f"{state}2"), d.fresh("g2"), d.fresh(f"{o}2"), d.fresh(f"{o}_sum")
    gate = _new_gate(d, form, view.dims(state), channel=False)
    dims = ", ".join(view.dims(state))
    d.insert_before(line, ast.Assign(g2, gate), parse_stmt(f"state {s2} : [{dims}]"),
                    parse_stmt(f"{s2} = exp({g2}) * {s2} + outer({v}, {k})"))
    readout = map_stmt(view.stmts[line], lambda e: ast.Name(s2) if e == ast.Name(state)
                       else None)
    d.insert_after(line, ast.Assign(o2, readout.value), parse_stmt(f"{total} = {o} + {o2}"))
    for j in range(line + 1, len(view.stmts)):
        stmt = d.get(j)
        if not isinstance(stmt, ast.StateDecl):
            d.set(j, map_stmt(stmt, lambda e: ast.Name(total) if e == ast.Name(o) else None))
    return d.build(f"Add a second memory {s2} beside {state}: outer({v}, {k}) written with a "
                   f"per-head decay exp({g2}) ({_describe_gate(form)}), read like {o} and "
                   f"added to it.")


MOVES = (add_short_conv, remove_short_conv, tune_constant, tune_hparam, add_householder_step,
         remove_householder_step, add_second_state)
