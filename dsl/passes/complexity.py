"""Cost in closed form: FLOPs per token, parameters and state bytes as SymPy formulas.

Costs are counted per token on the recurrent form (the form decoding runs), with the chunked
form's extra intra-chunk work reported beside it as a formula in the chunk size C. A formula
that contains the sequence length T means per-token cost (or state) grows with T; that is
rejected unless the mixer declares the matching class (``complexity quadratic``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import networkx as nx
import sympy as sp

from linarch.dsl.builtins import BUILTINS
from linarch.dsl.diagnostics import Reporter
from linarch.dsl.ir import Op
from linarch.dsl.passes.typecheck import T_SYMBOL
from linarch.dsl.recurrence import Layout, Recurrence, TClass
from linarch.dsl.types import Kind, numel
from linarch.dsl.unit import Unit

C_SYMBOL = sp.Symbol("C", positive=True, integer=True)
BYTES_FP32 = 4
ORDER = ("linear", "loglinear", "quadratic")


@dataclass(frozen=True)
class Cost:
    flops_per_token: sp.Expr  # recurrent form
    chunk_flops_per_token: sp.Expr  # chunked form's intra-chunk work, in terms of C
    params: sp.Expr
    state_bytes: sp.Expr  # recurrent states (fp32)
    cache_bytes: sp.Expr  # conv and token-shift caches needed to decode (fp32)
    measured: str  # linear | loglinear | quadratic

    def at(self, unit: Unit, expr: sp.Expr, chunk_size: int | None = None) -> int | None:
        subs = {C_SYMBOL: chunk_size or unit.options.chunk_size}
        v = unit.at_defaults(sp.sympify(expr).subs(subs))
        return None if v is None else int(round(v))


def complexity(unit: Unit, report: Reporter) -> Unit:
    m = unit.module
    types = unit.types
    skip: set[int] = set()
    flops = sp.Integer(0)
    chunk = sp.Integer(0)
    sized = sp.Integer(0)  # work on values whose size grows with T (a growing state: LA402)
    for tr in unit.transitions:
        skip |= _transition_nodes(unit, tr)
        rec, extra = transition_flops(unit, tr)
        flops += rec
        chunk += extra
        if T_SYMBOL in numel(types[tr.state].shape).free_symbols:
            sized += rec
    params = sp.Integer(0)
    state = sp.Integer(0)
    cache = sp.Integer(0)
    growing = []  # states whose size depends on T
    for i, n in m.nodes():
        ty = types.get(i)
        if ty is None or ty.is_error:
            continue
        if n.op is Op.PARAM:
            params += _param_count(unit, i)
        elif n.op is Op.STATE:
            state += BYTES_FP32 * numel(ty.shape)
            if T_SYMBOL in numel(ty.shape).free_symbols:
                growing.append((n, numel(ty.shape)))
        if i in skip or ty.kind is not Kind.TOKEN:
            continue
        flops += _node_flops(unit, i)
        if T_SYMBOL in numel(ty.shape).free_symbols:
            sized += _node_flops(unit, i)
        if n.op is Op.APPLY and m.node(n.args[0]).attr("kind") == "causal_conv":
            info = types[n.args[0]].module
            cache += BYTES_FP32 * info.widths[0] * (info.window - 1)
        if n.op is Op.CALL and n.attr("fn") == "token_shift":
            cache += BYTES_FP32 * numel(types[n.args[0]].shape)
        if n.op is Op.CALL and n.attr("fn") == "attention":
            k = types[n.args[1]]
            v = types[n.args[2]]
            cache += BYTES_FP32 * T_SYMBOL * (numel(k.shape) + numel(v.shape))
    flops = sp.expand(flops)
    measured = _order(flops, state + cache)
    declared = m.complexity or "linear"
    for n, size in growing:  # legal only in a mixer that declares a super-linear class
        if ORDER.index(_order(sp.Integer(0), size)) > ORDER.index(declared):
            report("LA402", f"state `{n.name}` has {size} entries: it grows with the sequence "
                   "length T", n.span, "a recurrent state has a fixed size; keep T out of its "
                   "shape (or declare the mixer's complexity class)")
    rest = _order(flops - sized, cache)  # growth from computation, not from a state's size
    if ORDER.index(rest) > ORDER.index(declared):
        what = "attention or a global operation" if rest == "quadratic" else "an FFT"
        report("LA401", f"cost per token grows with the sequence length ({rest} overall, "
               f"from {what}); FLOPs/token = {flops}", _span_of_growth(unit) or (
                   m.complexity_span), f"declare `complexity {rest}` if that is intended, "
               "or use a recurrent state instead")
    elif ORDER.index(measured) < ORDER.index(declared):
        report("LA404", f"declared `complexity {declared}` but the mixer is {measured}",
               m.complexity_span, "remove the declaration")
    cost = Cost(flops, sp.expand(chunk), sp.expand(params), sp.expand(state),
                sp.expand(cache), measured)
    return replace(unit, cost=cost)


def _order(flops: sp.Expr, memory: sp.Expr) -> str:
    """T outside a logarithm: quadratic overall; only inside one: log-linear."""
    exprs = [sp.expand(flops), sp.expand(memory)]
    if any(_poly_in_t(e) for e in exprs):
        return "quadratic"
    if any(T_SYMBOL in e.free_symbols for e in exprs):
        return "loglinear"
    return "linear"


def _poly_in_t(e: sp.Expr) -> bool:
    stripped = e.replace(sp.log, lambda *a: sp.Integer(1))
    return T_SYMBOL in stripped.free_symbols


def _span_of_growth(unit: Unit):
    for i, n in unit.module.nodes(Op.CALL, Op.SEQLEN, Op.APPLY):
        if n.op is Op.CALL and n.attr("fn") in ("attention", "fft_conv"):
            return n.span
        if n.op is Op.SEQLEN:
            users = unit.module.users(i)
            if users:
                return unit.module.node(users[0]).span
    return None


def _transition_nodes(unit: Unit, tr: Recurrence) -> set[int]:
    """Nodes whose work the transition's own formula accounts for: the S @ A chain and the
    nodes that only build the transition's matrices (the recurrent form never forms them)."""
    m = unit.module
    nodes = set(nx.descendants(m.graph, tr.state)) & set(nx.ancestors(m.graph, tr.update))
    for step in tr.steps:
        for root in step.operators:
            nodes |= _exclusive_subtree(unit, root)
    return nodes


def _exclusive_subtree(unit: Unit, root: int) -> set[int]:
    """``root`` and the per-token operands that only it uses (the transition's own operators)."""
    m = unit.module
    inside = {root}
    frontier = [root]
    while frontier:
        node = m.node(frontier.pop())
        for a in node.args:
            if a in inside or unit.types[a].kind is not Kind.TOKEN:
                continue
            if m.node(a).op in (Op.CALL, Op.BINARY, Op.NEG) and set(m.users(a)) <= inside:
                inside.add(a)
                frontier.append(a)
    return inside


def transition_flops(unit: Unit, tr: Recurrence) -> tuple[sp.Expr, sp.Expr]:
    """(recurrent FLOPs per token, chunked form's extra FLOPs per token) for one state.

    The chunked form's work follows the layout the form licenses: per chunk head, Q K^T and
    A V within the chunk, plus the UT transform for rank-one factors; micro-steps and extra
    readouts interleave positions, multiplying it."""
    shape = tr.frame.shape
    size = numel(shape)
    rec = size * len(tr.decays) + 4 * size * len(tr.rank_ones) + size  # decay, rank-ones, write
    layout = tr.chunk_layout
    if not isinstance(layout, Layout):
        return rec, sp.Integer(0)
    heads, v_axes, k_axes = (numel(tuple(shape[a] for a in sorted(axes)))
                             for axes in tr.axes_of(layout))
    C = C_SYMBOL
    positions = max(len(tr.steps), 1) + max(0, len(tr.reads) - 1)
    chunk = positions * heads * (2 * C * k_axes + 2 * C * v_axes)  # Q K^T and A V
    if tr.cls in (TClass.DELTA, TClass.HOUSEHOLDER, TClass.IPLR, TClass.DPLR):
        n = max(1, len(tr.rank_ones))
        # UT transform: K K^T, the triangular solve, W h
        chunk += heads * n * (2 * C * k_axes + C**2 / 3 + 2 * k_axes * v_axes)
    return rec, chunk


def _node_flops(unit: Unit, i: int) -> sp.Expr:
    m = unit.module
    n = m.node(i)
    ty = unit.types[i]
    out = numel(ty.shape)
    if n.op in (Op.NEG,):
        return out
    if n.op is Op.BINARY:
        if n.attr("op") == "@":
            a = unit.types[n.args[0]]
            b = unit.types[n.args[1]]
            if a.kind is Kind.IDENTITY or b.kind is Kind.IDENTITY:
                return sp.Integer(0)
            return 2 * out * a.shape[-1]
        return out
    if n.op is Op.CALL:
        fn = BUILTINS[n.attr("fn")]
        src = unit.types[n.args[0]] if n.args else ty
        if fn.name == "attention":
            q = unit.types[n.args[0]]
            v = unit.types[n.args[2]]
            return T_SYMBOL * 2 * (numel(q.shape) + numel(v.shape))
        if fn.name == "fft_conv":
            return 10 * numel(src.shape) * sp.log(T_SYMBOL, 2)
        if fn.name in ("sum", "mean", "entropy", "dot", "mix", "l2norm", "softmax"):
            return fn.flops * max(out, numel(src.shape), key=lambda e: sp.Integer(1)) * 0 + \
                fn.flops * numel(src.shape) * (2 if fn.name == "mix" else 1)
        return fn.flops * out
    if n.op is Op.APPLY:
        info = unit.types[n.args[0]].module
        x = unit.types[n.args[1]]
        lead = numel(x.shape[:-1])
        if info.kind in ("linear", "mlp", "lora"):
            w = info.widths
            return lead * sum(2 * a * b for a, b in zip(w, w[1:]))
        if info.kind == "causal_conv":
            return 2 * info.widths[0] * info.window
        return 5 * numel(x.shape)
    return sp.Integer(0)


def _param_count(unit: Unit, i: int) -> sp.Expr:
    m = unit.module
    n = m.node(i)
    ty = unit.types[i]
    kind = n.attr("kind")
    if kind == "weight":
        return numel(ty.shape)
    info = ty.module

    def flag(key: str, default: bool) -> bool:
        k = n.keyword(key)
        if k is None:
            return default
        node = m.node(k)  # a literal, or a keyword's default (a layer built otherwise differs)
        return bool(node.attr("value") if node.op is Op.CONST else node.attr("default"))

    w = info.widths
    if kind == "linear":
        return w[0] * w[1] + (w[1] if flag("bias", False) else 0)
    if kind == "mlp":
        bias = flag("bias", True)
        return sum(a * b + (b if bias else 0) for a, b in zip(w, w[1:]))
    if kind == "lora":
        return w[0] * w[1] + w[1] * w[2] + (w[2] if flag("bias", True) else 0)
    if kind == "causal_conv":
        return w[0] * info.window + (w[0] if flag("bias", False) else 0)
    if kind == "rmsnorm":
        return w[0] if flag("affine", True) else sp.Integer(0)
    if kind == "layernorm":
        return (w[0] if flag("affine", True) else 0) + (w[0] if flag("bias", True) else 0)
    if kind == "groupnorm":
        return (w[1] if flag("affine", True) else 0) + (w[1] if flag("bias", False) else 0)
    return sp.Integer(0)
