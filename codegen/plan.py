"""Plan as data: from a checked unit and a target to what each state's code computes.

``plan(unit, target)`` is computed once per compile and read by the emitters; it decides
nothing from generated text. For every recurrence (``linarch.dsl.recurrence``) it gives one of

- ``ChunkPlan``: the generic chunk algorithm ``chunk_dplr`` over a sequence of *positions*,
  each ``S <- S (Diag(exp g) + a c^T) + v k^T`` read as ``o = S q``, with every operand a
  ``Product`` of IR operands placed on the state's axes and a layout mapping those axes onto the
  algorithm's (heads, V, K). Micro-steps, extra rank-one factors, writes with different keys
  and readouts before the update (S_{t-1}) or beyond the first become extra positions,
  interleaved along time;
- ``KernelPlan``: a ChunkPlan that a fused Triton kernel implements, with its ``KernelSpec``
  (the Triton target only). This is the one place that maps the typed form to KernelSpec;
- ``ScanPlan``: the token-by-token recurrence, with the reason no chunk form applies.

The plan also orders the forward pass (``schedule``): every state becomes one block that runs
after its inputs and before the users of its readouts, so states whose inputs read other
states run in dependency order, not source order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import networkx as nx

from linarch.dsl.ir import Op
from linarch.dsl.passes.transitions import recurrence_inputs
from linarch.dsl.recurrence import (
    Decay,
    Gate,
    Layout,
    Operand,
    RankOne,
    Readout,
    Recurrence,
    TClass,
)
from linarch.dsl.unit import Unit


class Target(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    TORCH = "torch"
    TRITON = "triton"


@dataclass(frozen=True)
class LogTerm:
    """One log-decay: ``g`` for exp(g), ``log c`` for a positive constant; negated when the
    factor divides."""

    decay: Decay

    @property
    def axes(self) -> frozenset[int]:
        return self.decay.axes


@dataclass(frozen=True)
class Product:
    """``sign * prod(operands) * exp(sum(logs))``, placed on the state's axes."""

    sign: int = 1
    operands: tuple[Operand, ...] = ()
    logs: tuple[LogTerm, ...] = ()

    @property
    def axes(self) -> frozenset[int]:
        out: set[int] = set()
        for o in self.operands:
            out |= set(o.axes)
        for g in self.logs:
            out |= set(g.axes)
        return frozenset(out)


@dataclass(frozen=True)
class Position:
    """One step of the chunk algorithm's (interleaved) sequence."""

    logs: tuple[LogTerm, ...] = ()  # g: the sum of the log-decays of this position
    a: Product | None = None  # the rank-one factor's left vector, decayed before it
    c: Product | None = None  # its right vector, decayed after it
    v: tuple[Product, ...] = ()  # the write v k^T: v is the sum of these ...
    k: tuple[Product, ...] = ()  # ... and k the sum of these (one side is a single product)
    read: Readout | None = None  # the query q read at this position, and what it feeds


@dataclass(frozen=True)
class ChunkPlan:
    rec: Recurrence
    layout: Layout
    positions: tuple[Position, ...]
    no_kernel: str = ""  # Triton target: why no fused kernel implements this state

    @property
    def per_channel(self) -> bool:
        """Whether the log-decays vary along the chunk's key axis (g [B, T, H, K])."""
        _, _, k_axes = self.rec.axes_of(self.layout)
        return any(g.axes & k_axes for p in self.positions for g in p.logs)

    @property
    def has_rank_one(self) -> bool:
        return any(p.a is not None for p in self.positions)

    @property
    def how(self) -> str:
        n = len(self.positions)
        steps = f", {n} positions per token" if n > 1 else ""
        why = f"no fused kernel ({self.no_kernel}); " if self.no_kernel else ""
        return f"{why}chunked ({self.rec.algorithm}; generic DPLR chunk form{steps})"


@dataclass(frozen=True)
class KernelPlan:
    """A chunk plan that fused kernels implement: the operands of ``spec``'s entry point
    ``chunk_<name>(q, k, v, *inputs)`` (linarch.kernels.render.input_names gives the order).

    ``k``, ``v`` and ``beta`` hold one product per micro-step (the kernels take them
    interleaved along time, '(t n)' order); ``vectors`` are the [B, T, H, K] inputs that come
    before g: IPLR's read key p, DPLR's a and b. ``g`` is None where the state has no decay
    (a kernel that takes one gets zeros)."""

    chunk: ChunkPlan
    spec: object  # linarch.kernels.spec.KernelSpec
    q: Product
    k: tuple[Product, ...]
    v: tuple[Product, ...]
    g: tuple[LogTerm, ...] | None
    beta: tuple[Product, ...] | None
    vectors: tuple[Product, ...] = ()

    @property
    def rec(self) -> Recurrence:
        return self.chunk.rec

    @property
    def how(self) -> str:
        spec = self.spec
        steps = f", {spec.micro_steps} micro-steps" if spec.micro_steps > 1 else ""
        return f"fused Triton kernels ({spec.transition.value}{steps}) on GPU; " + self.chunk.how


@dataclass(frozen=True)
class ScanPlan:
    rec: Recurrence
    reason: str

    @property
    def how(self) -> str:
        return f"recurrent scan, token by token (slow): {self.reason}"


StatePlan = ChunkPlan | KernelPlan | ScanPlan


@dataclass(frozen=True)
class Plan:
    target: Target
    states: tuple[StatePlan, ...]
    schedule: tuple[int | Recurrence, ...]  # node ids and state blocks, in execution order
    inside: frozenset[int]  # nodes computed within some state block

    def state(self, rec: Recurrence) -> StatePlan:
        return next(p for p in self.states if p.rec is rec)


def plan(unit: Unit, target: Target = Target.TORCH) -> Plan:
    states = tuple(_state_plan(unit, rec, target) for rec in unit.transitions)
    schedule, inside = _schedule(unit)
    return Plan(target, states, schedule, inside)


# ---------------------------------------------------------------------------- one state


def _state_plan(unit: Unit, rec: Recurrence, target: Target) -> StatePlan:
    layout = rec.chunk_layout
    if not isinstance(layout, Layout):
        return ScanPlan(rec, layout)
    chunk = ChunkPlan(rec, layout, _positions(rec, layout))
    if target is Target.TRITON:
        kernel = _kernel(unit, chunk)
        if isinstance(kernel, KernelPlan):
            return kernel
        return replace(chunk, no_kernel=kernel)
    return chunk


def _positions(rec: Recurrence, layout: Layout) -> tuple[Position, ...]:
    """The interleaved sequence: reads of S_{t-1} first, then the micro-steps (a step with
    several rank-one factors or writes that do not share a side is split), then the reads of
    S_t beyond the first."""
    _, v_axes, k_axes = rec.axes_of(layout)
    before = [r for r in rec.reads if r.after == 0]
    after = [r for r in rec.reads if r.after != 0]
    out: list[Position] = [Position(read=r) for r in before]
    for step in rec.steps:
        segments: list[list] = [[]]
        for f in step.factors:
            if isinstance(f, RankOne) and any(isinstance(x, RankOne) for x in segments[-1]):
                segments.append([])
            segments[-1].append(f)
        for n, segment in enumerate(segments):
            pos = _segment(segment)
            if n == len(segments) - 1:
                writes = _write_groups(step.writes, v_axes, k_axes)
                pos = Position(pos.logs, pos.a, pos.c, *writes[0])
                out.append(pos)
                out += [Position(v=v, k=k) for v, k in writes[1:]]
            else:
                out.append(pos)
    if after:
        last = out[-1]
        out[-1] = Position(last.logs, last.a, last.c, last.v, last.k, after[0])
        out += [Position(read=r) for r in after[1:]]
    return tuple(out)


def _log(d: Decay) -> LogTerm:
    return LogTerm(d)


def _segment(factors: list) -> Position:
    """Decays and at most one rank-one factor: P (base + s u w^T) Q ->
    g = log P + log base + log Q, a = s rate (P u), c = Q w."""
    logs: list[LogTerm] = []
    rank = None
    before: list[LogTerm] = []
    after: list[LogTerm] = []
    for f in factors:
        if isinstance(f, Decay):
            logs.append(_log(f))
            (after if rank is not None else before).append(_log(f))
        else:
            rank = f
            logs += [_log(d) for d in f.base_decays]
    if rank is None:
        return Position(tuple(logs))
    a = Product(rank.sign, (*rank.rate, *rank.u), tuple(before))
    c = Product(1, rank.w, tuple(after))
    return Position(tuple(logs), a, c)


def _write_groups(writes, v_axes, k_axes) -> list[tuple[tuple[Product, ...], tuple[Product, ...]]]:
    """Writes as sums v k^T: terms sharing their key side add their values; with a trivial
    value side (V = 1) all keys add; otherwise each key is one more position."""
    if not v_axes:
        return [((Product(),), tuple(Product(w.sign, w.operands) for w in writes))]
    groups: dict[tuple, list[Product]] = {}
    for w in writes:
        key = tuple(o for o in w.operands if set(o.axes) & k_axes)
        rest = tuple(o for o in w.operands if not set(o.axes) & k_axes)
        groups.setdefault(key, []).append(Product(w.sign, rest))
    return [(tuple(values), (Product(1, key),)) for key, values in groups.items()]


# ---------------------------------------------------------------------------- kernels


def _kernel(unit: Unit, chunk: ChunkPlan) -> KernelPlan | str:
    """The fused kernels for this chunk plan, or why there are none (linarch.kernels.spec lists
    what each kernel family computes). The most specific family wins: the decay-only classes,
    the delta rule (plain, scalar-gated or per-channel gated, with micro-steps), IPLR, and any
    other single rank-one transition through the general DPLR kernels."""
    from linarch.kernels.spec import MAX_MICRO_STEPS, KernelSpec
    from linarch.kernels.spec import Transition as KT

    rec = chunk.rec
    if chunk.layout is not Layout.HEADS or rec.frame.rank != 3:
        return "the kernels take [heads, dv, dk] states laid out by heads"
    positions = chunk.positions
    last = positions[-1]
    if len(rec.reads) != 1 or last.read is None or rec.reads[0].after != len(rec.steps):
        return "the kernels read S @ q once per token, after its update"
    if any(len(p.v) != 1 or len(p.k) != 1 for p in positions):
        return "the kernels take one write v k^T per micro-step"
    if any(p.k[0].sign < 0 or p.k[0].logs or p.v[0].logs for p in positions):
        return "the kernels take a write v k^T with plain v and k"
    name = f"{_ident(unit.module.name)}_{_ident(rec.name)}"
    q = Product(1, last.read.query)
    gate, cls = rec.gate, rec.cls
    if gate in (Gate.ROW, Gate.ENTRY):
        return f"no fused kernel for a {gate.value} gate"
    if not chunk.has_rank_one:
        if len(positions) != 1:
            return "the decay kernels run one step per token"
        pos = positions[0]
        kind = {TClass.IDENTITY: KT.IDENTITY, TClass.CONSTANT_DECAY: KT.CONSTANT_DECAY,
                TClass.SCALAR_DECAY: KT.SCALAR_DECAY,
                TClass.DIAGONAL_DECAY: KT.DIAGONAL_DECAY}.get(cls)
        if kind is None:
            return f"no fused kernel for class {rec.label}"
        if kind is KT.CONSTANT_DECAY and any(not g.decay.static for g in pos.logs):
            return "the constant-decay kernel takes static per-head decays"
        return KernelPlan(chunk, KernelSpec(name, kind), q, pos.k, pos.v, pos.logs or None, None)
    if len(positions) > MAX_MICRO_STEPS:
        return f"the kernels run at most {MAX_MICRO_STEPS} micro-steps per token"
    if cls in (TClass.DELTA, TClass.HOUSEHOLDER):
        delta = _delta(chunk, gate)
        if isinstance(delta, tuple):
            kind, ks, vs, betas = delta
            spec = KernelSpec(name, kind, micro_steps=len(positions))
            return KernelPlan(chunk, spec, q, ks, vs, positions[0].logs or None, betas)
        if len(positions) > 1:
            return delta
    if len(positions) > 1:
        return "the kernels run micro-steps of the delta rule only"
    pos = positions[0]
    (rank,) = rec.rank_ones
    v = pos.v[0]
    if cls is TClass.IPLR and gate is not Gate.DIAGONAL and rank.sign < 0 and \
            not pos.a.logs and not pos.c.logs and rank.w == pos.k[0].operands and \
            v.sign > 0 and _contains(v.operands, rank.rate):
        # S (alpha I - beta p k^T) + beta v k^T: the write's rate and key are the factor's
        v = Product(v.sign, _without(v.operands, rank.rate))
        return KernelPlan(chunk, KernelSpec(name, KT.IPLR), q, pos.k, (v,), pos.logs or None,
                          (Product(1, rank.rate),), (Product(1, rank.u),))
    # S (Diag(exp g) + a c^T) + v k^T, the state read before the decay: any one rank-one factor
    return KernelPlan(chunk, KernelSpec(name, KT.DPLR), q, pos.k, pos.v, pos.logs or None, None,
                      (pos.a, pos.c))


def _delta(chunk: ChunkPlan, gate: Gate) -> tuple | str:
    """(kernel class, k, v, beta per micro-step) when every position is a delta-rule step
    ``S (I - beta k k^T) + beta v k^T`` and the decays come first (once per token), or why not."""
    from linarch.kernels.spec import Transition as KT

    rec, positions = chunk.rec, chunk.positions
    if len(positions) != len(rec.steps):
        return "the delta kernels take one Householder factor per micro-step"
    if any(p.logs for p in positions[1:]):
        return "the delta kernels decay the state once per token, before its first micro-step"
    if gate is Gate.DIAGONAL and (len(positions) > 1 or positions[0].c.logs):
        return "the per-channel delta kernels decay the state before its one Householder factor"
    ks, vs, betas = [], [], []
    for pos, step in zip(positions, rec.steps):
        (rank,) = step.rank_ones
        v, k = pos.v[0], pos.k[0]
        # the delta rule's write must be beta * outer(v, k) with the factor's own beta and k
        if rank.written_rate is None or k.operands != rank.u or v.sign < 0 or \
                not _contains(v.operands, rank.rate):
            return "the delta kernels take the write beta * outer(v, k) with the factor's beta, k"
        ks.append(k)
        vs.append(Product(v.sign, _without(v.operands, rank.rate)))
        betas.append(Product(1, rank.rate))
    kind = {Gate.NONE: KT.DELTA, Gate.DIAGONAL: KT.CHANNEL_GATED_DELTA}.get(gate, KT.GATED_DELTA)
    return kind, tuple(ks), tuple(vs), tuple(betas)


def _contains(ops: tuple[Operand, ...], sub: tuple[Operand, ...]) -> bool:
    rest = list(ops)
    for o in sub:
        if o not in rest:
            return False
        rest.remove(o)
    return True


def _without(ops: tuple[Operand, ...], sub: tuple[Operand, ...]) -> tuple[Operand, ...]:
    rest = list(ops)
    for o in sub:
        rest.remove(o)
    return tuple(rest)


def _ident(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).lower()


# ---------------------------------------------------------------------------- schedule


def block_nodes(unit: Unit, rec: Recurrence) -> set[int]:
    """The nodes a state block computes itself: the state, its updates, what the updates
    compute from the state, and its readouts."""
    m = unit.module
    g = m.graph
    depends = nx.descendants(g, rec.state) | {rec.state}
    inside = {rec.state}
    for step in rec.steps:
        inside |= (nx.ancestors(g, step.update) & depends) | {step.update}
    for r in rec.reads:  # and what lies between the state and each readout (S * q in a sum)
        inside |= (nx.ancestors(g, r.node) & depends) | {r.node}
    return inside


def _schedule(unit: Unit) -> tuple[tuple[int | Recurrence, ...], frozenset[int]]:
    m = unit.module
    owner: dict[int, Recurrence] = {}
    for rec in unit.transitions:
        for i in block_nodes(unit, rec):
            owner[i] = rec
    dag = nx.DiGraph()
    key: dict[object, int] = {}

    def vertex(i: int) -> object:
        rec = owner.get(i)
        return ("state", rec.state) if rec is not None else i

    for i, _node in m.nodes():
        v = vertex(i)
        dag.add_node(v)
        key[v] = max(key.get(v, i), i) if isinstance(v, tuple) else i
    for rec in unit.transitions:
        v = ("state", rec.state)
        key[v] = rec.update
        for i in recurrence_inputs(rec):
            if vertex(i) != v:
                dag.add_edge(vertex(i), v)
    for i, node in m.nodes():
        for a in node.args:
            if vertex(a) != vertex(i):
                dag.add_edge(vertex(a), vertex(i))
    order = nx.lexicographical_topological_sort(dag, key=lambda v: key[v])
    by_state = {rec.state: rec for rec in unit.transitions}
    schedule = tuple(by_state[v[1]] if isinstance(v, tuple) else v for v in order)
    return schedule, frozenset(owner)


__all__ = ["plan", "Plan", "Target", "ChunkPlan", "KernelPlan", "ScanPlan", "Position",
           "Product", "LogTerm", "block_nodes", "Op"]
