"""Emit a state's recurrent form: a loop over tokens that applies each update as written.

This is the reference every chunked form is tested against, the decoding path (one token with
a cache), and the form of states that have no chunk algorithm. Inside the loop go the nodes
computed from the state (its updates and readouts) and the unnamed element-wise nodes only
they use, so that no [B, T, state] tensor is built for them; every other input is computed once
for the whole sequence before the loop and indexed at token t.
"""

from __future__ import annotations

import networkx as nx

from linarch.codegen.emit import TIME_OPS, Ctx, Emitter
from linarch.codegen.plan import block_nodes
from linarch.dsl.ir import Op
from linarch.dsl.recurrence import Recurrence
from linarch.dsl.unit import Unit


def local_nodes(unit: Unit, rec: Recurrence) -> set[int]:
    """Nodes computed inside the loop: the block's own nodes and the unnamed element-wise
    operands that only they use (never a value that reads another state: that one is computed
    by its own block, before this one)."""
    m = unit.module
    g = m.graph
    local = block_nodes(unit, rec)
    states = [i for i, _ in m.nodes(Op.STATE) if i != rec.state]
    elsewhere = set().union(*(nx.descendants(g, s) | {s} for s in states))
    for i in sorted(set().union(*(nx.ancestors(g, n) for n in local)) - local, reverse=True):
        n = m.node(i)
        users = set(m.users(i))
        if not users or not users <= local or n.name is not None or i in elsewhere:
            continue
        if n.op in (Op.BINARY, Op.NEG, Op.IDENTITY, Op.CONST, Op.RESHAPE) or (
                n.op is Op.CALL and n.attr("fn") not in TIME_OPS):
            local.add(i)
    return local - {rec.state}


def scan_lines(unit: Unit, em: Emitter, rec: Recurrence, state: str,
               reads: dict[int, str]) -> list[str]:
    """The loop over tokens; it leaves the final state in ``state`` and every readout's
    sequence in ``reads[node]``."""
    m = unit.module
    local = local_nodes(unit, rec)
    ctx = Ctx(step=True, local={rec.state: state}, inline=frozenset(local))
    hidden = {i: em.names.pop(i) for i in list(em.names) if i in local}
    try:
        body: list[str] = []
        collected: list[tuple[int, str]] = []

        def read_at(after: int) -> None:
            for r in rec.reads:
                if r.after == after:
                    collected.append((r.node, em.expr(r.node, ctx)))

        read_at(0)
        current = state
        for k, step in enumerate(rec.steps):
            text = em.expr(m.node(step.update).args[1], ctx)
            var = f"_{state}_next{k}"
            body.append(f"{var} = ({text}).to(work_dtype)")
            ctx.local[step.update] = var
            current = var
        ones = ", ".join(["1"] * rec.frame.rank)
        body.append("if mask is not None:")
        body.append(f"    {current} = torch.where(mask[:, t].reshape(-1{', ' if ones else ''}"
                    f"{ones}) > 0, {current}, {state})")
        body.append(f"{state} = {current}")
        ctx.local[rec.update] = state
        pre = list(collected)
        collected.clear()
        read_at(len(rec.steps))
    finally:
        em.names.update({i: n for i, n in hidden.items()})
    lines = [f"_reads_{state} = []", "for t in range(T):"]
    pre_lines = [f"_pre_{state} = ({', '.join(t for _, t in pre)},)"] if pre else []
    lines += ["    " + b for b in pre_lines + body]
    order = pre + collected
    post = [t for _, t in collected]
    if order:
        items = ", ".join([f"*_pre_{state}"] * bool(pre) + post)
        lines.append(f"    _reads_{state}.append(({items},))")
    for k, (node, _) in enumerate(order):
        lines.append(f"{reads[node]} = torch.stack([_r[{k}] for _r in _reads_{state}], 1)")
    return lines
