"""From a classified transition to the operands of the generic chunk form.

Every chunkable class is one recurrence, S_t = S_{t-1} (Diag(exp(g_t)) + a_t c_t^T) + v_t k_t^T,
read out as o_t = S_t q_t (``runtime.chunk_dplr``). This module walks each micro-step's factors in
order and writes the Python expressions for g, a, c, v, k and q:

    P (I + s u w^T) Q   ->  g = log P + log Q,  a = s (P u),  c = Q w
    P (alpha I + s u w^T)   ->  g = log P + log alpha,  a = s (P u),  c = w
    P (Diag(d) + s u w^T)   ->  g = log P + log d,  a = s (P u),  c = w

where P and Q are the decays before and after the rank-one factor. A step with two rank-one
factors becomes two micro-steps; micro-steps are interleaved along time (DeltaProduct).
Anything else (an elementwise scan, a vector state, a write that is not a sum of outer products
with one key, a readout that is not S @ q) has no chunk form: ``plan`` says why and the layer
runs its recurrent form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from linarch.codegen.emit import Ctx, Emitter
from linarch.dsl.ir import Op
from linarch.dsl.passes.transitions import TClass, Transition, resolve
from linarch.dsl.types import Kind


class NoChunkForm(Exception):
    pass


@dataclass
class MicroStep:
    logs: list[tuple[str, bool]] = field(default_factory=list)  # (log-decay text, per channel)
    a: str | None = None
    c: str | None = None
    v: str | None = None
    k: str | None = None


@dataclass(frozen=True)
class ChunkPlan:
    q: str
    k: str
    v: str
    g: str | None
    a: str | None
    c: str | None
    micro_steps: int
    lines: tuple[str, ...]  # statements computing the operands


def plan(em: Emitter, tr: Transition, readout: int | None, mask: bool = True,
         dims: tuple[str, str, str] = ("H", "V", "K")) -> ChunkPlan:
    """Operands of ``chunk_dplr`` for ``tr`` (raises NoChunkForm with the reason)."""
    unit = em.unit
    m = unit.module
    if tr.cls is TClass.ELEMENTWISE:
        raise NoChunkForm("elementwise scans have no chunk form")
    shape = unit.types[tr.state].shape
    if len(shape) != 3:
        raise NoChunkForm("only [heads, dv, dk] matrix states have a chunk form here")
    if readout is None:
        raise NoChunkForm("the state is not read as S @ q")
    start = len(em.lines)
    micro: list[MicroStep] = []
    for step in tr.steps:
        cur = MicroStep()
        for f in step.scales:
            cur.logs.append(_log_of(em, f))
        for r in step.factors:
            cur = _factor(em, tr, resolve(m, r), cur, micro)
        cur.v, cur.k = _writes(em, step.writes)
        micro.append(cur)
    q_node = m.node(readout).args[1]
    lines = tuple(em.lines[start:])
    del em.lines[start:]
    return _assemble(em, micro, q_node, lines, mask, dims)


def _text(em: Emitter, i: int) -> str:
    out = em.expr(i, Ctx())
    if not isinstance(out, str):
        raise NoChunkForm("an identity where a value was expected")
    return out


def _per_channel(em: Emitter, i: int) -> bool:
    return len(em.unit.types[i].shape) >= 2


def _log_of(em: Emitter, f: int) -> tuple[str, bool]:
    """The log-decay of a multiplicative factor (exp(g) -> g; a static factor -> its log)."""
    m = em.unit.module
    inverse = f < 0
    f = -f - 1 if inverse else f
    n = m.node(resolve(m, f))
    ty = em.unit.types[f]
    if n.op is Op.CALL and n.attr("fn") == "exp":
        text = _text(em, n.args[0])
    elif ty.kind is Kind.STATIC:
        text = f"torch.log(torch.as_tensor({_text(em, f)}, dtype=x.dtype, device=x.device))"
    else:
        raise NoChunkForm("a decay that is not exp(log-decay) has no log-space chunk form")
    return (f"(-{text})" if inverse else text), _per_channel(em, f)


def _factor(em: Emitter, tr: Transition, r: int, cur: MicroStep, done: list) -> MicroStep:
    m = em.unit.module
    n = m.node(r)
    if n.op is Op.IDENTITY:
        return cur
    if n.op is Op.CALL and n.attr("fn") == "diag":
        log, _ = _log_of(em, n.args[0])
        cur.logs.append((log, True))
        if cur.c is not None:
            cur.c = f"({cur.c} * torch.exp({log}))"
        return cur
    rank = next((ro for ro in tr.rank_ones if ro.node == r), None)
    if rank is None and n.op is Op.BINARY and n.attr("op") == "*":
        a, b = n.args
        scalar_side = a if len(em.unit.types[a].shape) < len(em.unit.types[b].shape) else b
        other = b if scalar_side == a else a
        cur.logs.append(_log_of(em, scalar_side))
        return _factor(em, tr, resolve(m, other), cur, done)
    if rank is None:
        raise NoChunkForm("a transition factor without a chunk lowering")
    if cur.a is not None:  # a second rank-one factor in the same update: a new micro-step
        done.append(cur)
        cur = MicroStep()
    u = _heads(em, rank.u)
    w = _heads(em, rank.w)
    pre = _decay_text(cur.logs)
    s = "1.0" if rank.rate is None else f"{_text(em, rank.rate)}[..., None]"
    if rank.sign < 0:
        s = f"(-{s})"
    cur.a = f"({s} * {u})" if pre is None else f"({s} * {pre} * {u})"
    cur.c = w
    if rank.scaled_identity is not None:  # alpha I + ...: alpha decays S but not the read
        cur.logs.append(_log_of(em, rank.scaled_identity))
    if rank.base is not None:
        log, _ = _log_of(em, rank.base)
        cur.logs.append((log, True))
    return cur


def _decay_text(logs: list[tuple[str, bool]]) -> str | None:
    if not logs:
        return None
    total = " + ".join(text for text, _ in logs)
    per_channel = any(pc for _, pc in logs)
    return f"torch.exp({total})" if per_channel else f"torch.exp({total})[..., None]"


def _heads(em: Emitter, i: int) -> str:
    """A key-side vector as [B, T, H, K] (a vector shared by all heads is expanded)."""
    text = _text(em, i)
    if len(em.unit.types[i].shape) == 1:
        return f"{text}[:, :, None, :]"
    return text


def _writes(em: Emitter, writes) -> tuple[str, str]:
    m = em.unit.module
    vs: list[str] = []
    key = None
    for sign, node in writes:
        coef, v, k = _outer_term(em, resolve(m, node))
        if key is not None and resolve(m, k) != key:
            raise NoChunkForm("writes with different keys in one step")
        key = resolve(m, k)
        vt = _text(em, v)
        if coef:
            vt = f"({' * '.join(coef)} * {vt})"
        vs.append(vt if sign > 0 else f"(-{vt})")
    if key is None:
        raise NoChunkForm("a step without a write")
    return " + ".join(vs), _heads(em, key)


def _outer_term(em: Emitter, i: int) -> tuple[list[str], int, int]:
    m = em.unit.module
    n = m.node(i)
    if n.op is Op.CALL and n.attr("fn") == "outer":
        return [], n.args[0], n.args[1]
    if n.op is Op.BINARY and n.attr("op") == "*":
        for coef, other in ((n.args[0], n.args[1]), (n.args[1], n.args[0])):
            on = m.node(resolve(m, other))
            if on.op is Op.CALL and on.attr("fn") == "outer":
                ct = _text(em, coef)
                if em.unit.types[coef].shape:
                    ct = f"{ct}[..., None]"
                return [ct], on.args[0], on.args[1]
    raise NoChunkForm("a write that is not coef * outer(v, k)")


def _assemble(em: Emitter, micro: list[MicroStep], q_node: int, lines, mask: bool,
              dims: tuple[str, str, str]) -> ChunkPlan:
    out = list(lines)
    n = len(micro)
    per_channel = any(pc for ms in micro for _, pc in ms.logs)
    any_rank = any(ms.a is not None for ms in micro)
    q = _heads(em, q_node)
    shape_ref = "_q"
    heads, _, keys = dims
    out.append(f"_q = torch.broadcast_to({q}, (B, T, {heads}, {keys})).to(work_dtype)")

    def var(name: str, text: str) -> str:
        out.append(f"{name} = {text}")
        return name

    gs, as_, cs, vs, ks = [], [], [], [], []
    for j, ms in enumerate(micro):
        k = var(f"_k{j}", f"torch.broadcast_to({ms.k}, {shape_ref}.shape).to(work_dtype)")
        v = var(f"_v{j}", f"torch.broadcast_to({ms.v}, (B, T, {heads}, {dims[1]}))"
                          ".to(work_dtype)")
        any_decay = any(mm.logs for mm in micro)
        if ms.logs:
            total = " + ".join(t for t, _ in ms.logs)
            target = f"{shape_ref}.shape" if per_channel else f"{shape_ref}.shape[:-1]"
            g = var(f"_g{j}", f"torch.broadcast_to({total}, {target}).to(work_dtype)")
        elif any_decay or n > 1:
            g = var(f"_g{j}", f"{shape_ref}.new_zeros({shape_ref}.shape"
                    f"{'' if per_channel else '[:-1]'})")
        else:
            g = None
        if mask:
            out.append("if mask is not None:")
            if g is not None:
                extra = ", None" if per_channel else ""
                out.append(f"    {g} = {g} * mask.to(work_dtype)[..., None{extra}]")
            out.append(f"    {v} = {v} * mask.to(work_dtype)[..., None, None]")
        if any_rank:
            if ms.a is None:
                a = var(f"_a{j}", f"torch.zeros_like({shape_ref})")
                c = var(f"_c{j}", f"torch.zeros_like({shape_ref})")
            else:
                a = var(f"_a{j}", f"torch.broadcast_to({ms.a}, {shape_ref}.shape).to(work_dtype)")
                # c = k: pass the same tensor object, so chunk_dplr merges the two writes
                c = k if ms.c == ms.k else var(
                    f"_c{j}", f"torch.broadcast_to({ms.c}, {shape_ref}.shape).to(work_dtype)")
                if mask:
                    out.append("if mask is not None:")
                    out.append(f"    {a} = {a} * mask.to(work_dtype)[..., None, None]")
            as_.append(a)
            cs.append(c)
        gs.append(g)
        vs.append(v)
        ks.append(k)
    if n == 1:
        return ChunkPlan("_q", ks[0], vs[0], gs[0], as_[0] if any_rank else None,
                         cs[0] if any_rank else None, 1, tuple(out))
    zeros_q = ["torch.zeros_like(_q)"] * (n - 1) + ["_q"]
    out.append(f"_qi = interleave([{', '.join(zeros_q)}])")
    out.append(f"_ki = interleave([{', '.join(ks)}])")
    out.append(f"_vi = interleave([{', '.join(vs)}])")
    out.append(f"_gi = interleave([{', '.join(gs)}])")
    if any_rank:
        out.append(f"_ai = interleave([{', '.join(as_)}])")
        out.append("_ci = _ki" if cs == ks else f"_ci = interleave([{', '.join(cs)}])")
    return ChunkPlan("_qi", "_ki", "_vi", "_gi", "_ai" if any_rank else None,
                     "_ci" if any_rank else None, n, tuple(out))
