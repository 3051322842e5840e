"""``linarch show``: what the compiler understood, as text a researcher can check by eye."""

from __future__ import annotations

import sympy as sp

from linarch.dsl.ir import Op
from linarch.dsl.passes.causality import Reach
from linarch.dsl.passes.complexity import C_SYMBOL
from linarch.dsl.pipeline import Result


def _num(result: Result, expr: sp.Expr, chunk: int | None = None) -> str:
    unit = result.unit
    v = unit.at_defaults(sp.sympify(expr).subs({C_SYMBOL: chunk or unit.options.chunk_size}))
    if v is None:
        return "?"
    return f"{int(round(v)):,}" if abs(v - round(v)) < 1e-6 else f"{v:,.1f}"


def _dim_names(result: Result) -> dict:
    """Symbolic value -> the first binding name that holds it (H, dk, dv ...) for display."""
    unit = result.unit
    names: dict = {}
    for hparams_too in (False, True):
        for i, n in unit.module.nodes():
            ty = unit.types.get(i)
            if (n.name and ty is not None and ty.is_scalar_static and n.op is not Op.CONST
                    and (n.op is not Op.HPARAM or hparams_too)):
                names.setdefault(ty.value, n.name)
    return names


def _default(unit, i: int, n) -> str:
    """A keyword's default; a derived one shows its value at the defaults."""
    if not n.args:
        return str(n.attr("default"))
    ty = unit.types.get(i)
    value = unit.defaults.get(ty.value) if ty is not None and ty.value is not None else None
    return f"{value} (derived)"


def show(result: Result) -> str:
    unit = result.unit
    if unit is None or unit.cost is None:
        return "\n".join(d.render() for d in result.diagnostics)
    m = unit.module
    lines: list[str] = []
    n_states = len(unit.transitions)
    lines.append(f"{m.name}: {n_states} state{'s' if n_states != 1 else ''}, "
                 f"{unit.cost.measured} in T" + (f" (declared {m.complexity})" if m.complexity
                                                 else ""))
    hps = ", ".join(f"{n.name}={_default(unit, i, n)}" for i, n in m.hparams())
    lines.append(f"  defaults: {hps}")
    for tr, verdict in zip(unit.transitions, unit.stability or (None,) * n_states):
        shape = unit.types[tr.state].shape
        numbers = ", ".join(_num(result, d) for d in shape)
        names = _dim_names(result)
        pretty = "[" + ", ".join(names.get(d, str(d)) for d in shape) + "]"
        lines.append(f"  state {tr.name} {pretty} = [{numbers}]")
        lines.append(f"    transition  A = {tr.formula}")
        lines.append(f"    class       {tr.label}")
        lines.append(f"    algorithm   {tr.algorithm}, C = {unit.options.chunk_size}")
        if verdict is not None:
            lines.append(f"    stability   {verdict}")
    lines.append("  causality:")
    groups: dict[str, list[str]] = {}
    for i, n in m.nodes():
        dep = unit.time.get(i)
        if n.name is None or dep is None or dep.reach is Reach.STATIC or n.op is Op.PARAM:
            continue
        label = n.name + ("'" if n.op is Op.UPDATE else "")
        why = f" ({dep.why})" if dep.why and dep.reach is not Reach.POINTWISE else ""
        groups.setdefault(f"{dep}{why}", []).append(label)
    for what, names in groups.items():
        lines.append(f"    {', '.join(names)}: {what}")
    lines.append("    => every value at token t depends only on tokens <= t")
    cost = unit.cost
    lines.append(f"  FLOPs/token (recurrent) = {cost.flops_per_token}")
    lines.append(f"                          = {_num(result, cost.flops_per_token)} at defaults")
    lines.append(f"  chunked extra FLOPs/token = {cost.chunk_flops_per_token}")
    lines.append(f"                          = {_num(result, cost.chunk_flops_per_token)} at "
                 f"C = {unit.options.chunk_size}")
    lines.append(f"  params      = {cost.params} = {_num(result, cost.params)}")
    lines.append(f"  state bytes = {cost.state_bytes} = {_num(result, cost.state_bytes)} (fp32)")
    lines.append(f"  decode cache bytes = {cost.cache_bytes} = {_num(result, cost.cache_bytes)}")
    for d in result.diagnostics:
        lines.append(d.render())
    return "\n".join(lines)
