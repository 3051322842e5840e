"""The one typed description of a recurrent state, which every consumer reads.

A state ``S`` of declared shape ``[*lead, dv, dk]`` evolves token by token as a product of
micro-steps, each ``S <- S F_1 F_2 ... F_m + B_1 + ... + B_r`` in LANDSCAPE's row convention:

- every factor ``F`` is a **decay** (a multiplier placed on some of the state's axes, in log
  space when it is ``exp(g)`` or a constant proven positive) or a **rank-one factor**
  ``base + sign * rate * u w^T`` whose base is ``I``, ``alpha I`` or ``Diag(d)``;
- every write ``B`` is a signed product of operands placed on the state's axes (``outer(v, k)``
  is the product of ``v`` on the value axis and ``k`` on the key axis);
- every **readout** is a contraction ``sum over C of (Q * S)`` of the state at one micro-step
  position (``S @ q`` contracts the key axis with ``q``; ``S`` itself contracts nothing).

Every value appears as an ``Operand``: an IR node and the state axes its feature axes stand on
(``linarch.dsl.types.alignment``), so broadcasting is explicit and never guessed again. The
transitions pass (``linarch.dsl.passes.transitions``) is the only code that decomposes an
update; the class, the gate, the chunk layout and the display text below are functions of this
form alone, and chunk lowering, ``show``, the cost model, the stability pass, the Triton target
and the mutation operators read them instead of looking at the update again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cached_property

from linarch.dsl.types import Shape


class TClass(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    IDENTITY = "identity"
    CONSTANT_DECAY = "constant decay"
    SCALAR_DECAY = "scalar decay"
    DIAGONAL_DECAY = "diagonal decay"
    ROW_DECAY = "value-channel decay"
    ENTRY_DECAY = "per-entry decay"
    DELTA = "delta"
    HOUSEHOLDER = "householder product"
    IPLR = "IPLR"
    DPLR = "DPLR"
    ELEMENTWISE = "elementwise scan"


class Gate(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    """Where the decays of a state vary: nowhere (none), per head but static (constant), per head
    and token (scalar), along the key axis (diagonal), along the value axis (row), or along both
    (entry)."""

    NONE = "none"
    CONSTANT = "constant"
    SCALAR = "scalar"
    DIAGONAL = "diagonal"
    ROW = "value-channel"
    ENTRY = "per-entry"


class DecayForm(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    LOG = "log"  # exp(g): the operand is the log-decay g
    CONSTANT = "constant"  # a static multiplier proven > 0: its log is the log-decay
    MULTIPLIER = "multiplier"  # anything else: no log-space form, so no chunked form


class Base(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    IDENTITY = "I"
    SCALED = "alpha I"
    DIAGONAL = "Diag(d)"


class Layout(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    """How the state's axes map onto the chunk algorithm's (heads, V, K): the chunk form computes
    o = S q per head, with decays along K, so the layout puts the contracted axis on K."""

    HEADS = "heads"  # heads = lead axes, V = value axis, K = key axis
    TRANSPOSED = "transposed"  # heads = lead axes, V = key axis, K = value axis
    ROWS = "rows"  # heads = lead axes x value axis, V = 1, K = key axis
    # heads = lead axes x value axis, V = key axis, K = 1: a state of vectors read whole (an EMA
    # [H, d] with a per-head decay), where ENTRIES would make every entry a head of its own
    VECTORS = "vectors"
    ENTRIES = "entries"  # heads = every axis, V = K = 1


@dataclass(frozen=True)
class Frame:
    """The state's axes: ``lead`` (heads), ``row`` (the value axis dv) and ``col`` (the key axis
    dk). A vector state ``[d]`` is one row (``row`` is None); a scalar state has neither."""

    shape: Shape

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def lead(self) -> tuple[int, ...]:
        return tuple(range(max(0, self.rank - 2)))

    @property
    def row(self) -> int | None:
        return self.rank - 2 if self.rank >= 2 else None

    @property
    def col(self) -> int | None:
        return self.rank - 1 if self.rank >= 1 else None


@dataclass(frozen=True)
class Operand:
    """An IR value and, for each of its feature axes, the state axis it stands on.

    ``inverse``: the operand divides (``S / c``, ``outer(v, k) / n``)."""

    node: int
    axes: tuple[int, ...]
    static: bool
    inverse: bool = False


@dataclass(frozen=True)
class Decay:
    """A multiplicative factor of the transition, as written at node ``factor``."""

    factor: int
    value: Operand  # g for LOG (the log-decay), the multiplier itself otherwise
    form: DecayForm
    written: int | None = None  # the multiplier expression it came from, as the update writes it
    link: int | None = None  # the step's chain link it belongs to (see Step.chain)

    @property
    def axes(self) -> frozenset[int]:
        return frozenset(self.value.axes)

    @property
    def static(self) -> bool:
        return self.value.static


@dataclass(frozen=True)
class RankOne:
    """``base + sign * rate * u w^T``: ``rate`` are per-head scalars; ``u`` and ``w`` are
    products of operands on the lead and key axes (a rate that varies along one side of the
    outer product is folded into that side)."""

    factor: int
    sign: int
    rate: tuple[Operand, ...]
    u: tuple[Operand, ...]
    w: tuple[Operand, ...]
    base: Base = Base.IDENTITY
    base_decays: tuple[Decay, ...] = ()  # alpha for SCALED, d for DIAGONAL (a product)
    written_rate: int | None = None  # the rate as the program writes it (rate * outer(u, w))
    outer: int | None = None  # the outer(u, w) call as written
    link: int | None = None  # the step's chain link it belongs to (see Step.chain)

    @property
    def symmetric(self) -> bool:
        return self.u == self.w

    @property
    def householder(self) -> bool:
        """I - beta k k^T: the delta rule's factor."""
        return self.symmetric and self.sign < 0 and self.base is Base.IDENTITY


Factor = Decay | RankOne


@dataclass(frozen=True)
class Write:
    """One input term ``sign * product of operands`` (``beta * outer(v, k)`` is beta, v on the
    value axis and k on the key axis)."""

    term: int
    sign: int
    operands: tuple[Operand, ...]
    outer: int | None = None  # the term's one outer(v, k) call as written, if it has one


@dataclass(frozen=True)
class Step:
    """One micro-step ``S <- S F_1 ... F_m + writes`` (most states have one per token)."""

    update: int
    factors: tuple[Factor, ...]
    writes: tuple[Write, ...]
    # nodes that only build transition matrices (diag(.), I - ..., alpha * I): the recurrent form
    # applies the factors without materialising them, so the cost model does not count them
    operators: tuple[int, ...] = ()
    # the state term as written, in application order: ("scale", c) for c * S, ("divide", c)
    # for S / c, ("factor", F) for S @ F; every factor above names its link
    chain: tuple[tuple[str, int], ...] = ()

    @property
    def decays(self) -> tuple[Decay, ...]:
        return tuple(f for f in self.factors if isinstance(f, Decay))

    @property
    def rank_ones(self) -> tuple[RankOne, ...]:
        return tuple(f for f in self.factors if isinstance(f, RankOne))


@dataclass(frozen=True)
class Readout:
    """A value the program reads from the state: ``sum over contract of (query * S)`` after
    ``after`` micro-steps (0: the state before the token, S_{t-1}; the number of steps: S_t).
    An empty query is all ones; a read with no contraction and no query is the whole state."""

    node: int  # the node whose per-token value this read produces
    after: int
    query: tuple[Operand, ...]
    contract: tuple[int, ...]
    computed: bool = False  # not a contraction: a value the update computes from the state

    @property
    def whole(self) -> bool:
        return not self.query and not self.contract and not self.computed


@dataclass(frozen=True)
class Recurrence:
    """A state, its micro-steps and its readouts; everything else here is derived."""

    state: int  # the STATE node (S_{t-1})
    name: str
    frame: Frame
    steps: tuple[Step, ...]
    reads: tuple[Readout, ...]
    formula: str = ""  # A as the program writes it, for `show`

    @property
    def update(self) -> int:
        """The last UPDATE node: S_t."""
        return self.steps[-1].update

    @property
    def decays(self) -> tuple[Decay, ...]:
        """Every decay, rank-one bases included."""
        out: list[Decay] = []
        for step in self.steps:
            for f in step.factors:
                if isinstance(f, Decay):
                    out.append(f)
                else:
                    out.extend(f.base_decays)
        return tuple(out)

    @property
    def rank_ones(self) -> tuple[RankOne, ...]:
        return tuple(r for step in self.steps for r in step.rank_ones)

    @property
    def writes(self) -> tuple[Write, ...]:
        return tuple(w for step in self.steps for w in step.writes)

    @property
    def householders(self) -> int:
        return len(self.rank_ones) if self.cls in (TClass.DELTA, TClass.HOUSEHOLDER) else 0

    # ------------------------------------------------------------------ derived: class
    @cached_property
    def gate(self) -> Gate:
        decays = self.decays
        if not decays:
            return Gate.NONE
        axes = frozenset().union(*(d.axes for d in decays))
        row, col = self.frame.row, self.frame.col
        if row in axes and col in axes:
            return Gate.ENTRY
        if row is not None and row in axes:
            return Gate.ROW
        if col is not None and col in axes:
            return Gate.DIAGONAL
        if all(d.static for d in decays):
            return Gate.CONSTANT
        return Gate.SCALAR

    @cached_property
    def cls(self) -> TClass:
        if any(d.form is DecayForm.MULTIPLIER for d in self.decays):
            return TClass.ELEMENTWISE
        rank_ones = self.rank_ones
        if not rank_ones:
            return {Gate.NONE: TClass.IDENTITY, Gate.CONSTANT: TClass.CONSTANT_DECAY,
                    Gate.SCALAR: TClass.SCALAR_DECAY, Gate.DIAGONAL: TClass.DIAGONAL_DECAY,
                    Gate.ROW: TClass.ROW_DECAY, Gate.ENTRY: TClass.ENTRY_DECAY}[self.gate]
        if any(r.base is Base.DIAGONAL for r in rank_ones):
            return TClass.DPLR
        if all(r.householder for r in rank_ones):
            return TClass.DELTA if len(rank_ones) == 1 else TClass.HOUSEHOLDER
        return TClass.IPLR

    @property
    def label(self) -> str:
        cls = self.cls
        gate = "no" if self.gate is Gate.NONE else self.gate.value
        if cls is TClass.HOUSEHOLDER:
            return f"{len(self.rank_ones)} householders ({gate} gate)"
        if cls in (TClass.DELTA, TClass.IPLR):
            return f"{cls.value} ({gate} gate)"
        return cls.value

    # ------------------------------------------------------------------ derived: chunk form
    @cached_property
    def chunk_layout(self) -> Layout | str:
        """The cheapest layout under which the chunk algorithm computes this recurrence and
        all its readouts exactly, or the reason none does."""
        if self.cls is TClass.ELEMENTWISE:
            return "a decay that is not exp(log-decay) or a positive constant has no log-space " \
                   "chunk form"
        why = "no layout fits"
        for layout in Layout:
            reason = self._misfit(layout)
            if reason is None:
                return layout
            if layout is Layout.HEADS:
                why = reason
        return why

    def axes_of(self, layout: Layout) -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
        """(heads, V, K): the state axes each chunk axis gathers under ``layout``."""
        f = self.frame
        lead = frozenset(f.lead)
        row = frozenset() if f.row is None else frozenset({f.row})
        col = frozenset() if f.col is None else frozenset({f.col})
        return {
            Layout.HEADS: (lead, row, col),
            Layout.TRANSPOSED: (lead, col, row),
            Layout.ROWS: (lead | row, frozenset(), col),
            Layout.VECTORS: (lead | row, col, frozenset()),
            Layout.ENTRIES: (lead | row | col, frozenset(), frozenset()),
        }[layout]

    def _misfit(self, layout: Layout) -> str | None:
        heads, v_axes, k_axes = self.axes_of(layout)
        col = self.frame.col
        if self.rank_ones and k_axes != frozenset({col}):
            return "rank-one factors act on the key axis"
        for d in self.decays:
            if d.axes & v_axes:
                return "a decay varies along the value axis"
        for w in self.writes:
            for op in w.operands:
                if set(op.axes) & v_axes and set(op.axes) & k_axes:
                    return "a write is not an outer product of a value and a key"
        for r in self.reads:
            if r.computed:
                return "a value computed from the state inside its update is read elsewhere"
            if frozenset(r.contract) != k_axes:
                return "a readout does not contract the key axis (S @ q)"
            for op in r.query:
                if set(op.axes) & v_axes:
                    return "a readout's query varies along the value axis"
        return None

    @property
    def algorithm(self) -> str:
        layout = self.chunk_layout
        if not isinstance(layout, Layout):
            return ALGORITHMS[TClass.ELEMENTWISE]
        base = ALGORITHMS[self.cls]
        if self.cls in (TClass.DELTA, TClass.HOUSEHOLDER, TClass.IPLR):
            base += {Gate.SCALAR: ", scalar gate", Gate.DIAGONAL: ", per-channel gate with "
                     "sub-chunk anchoring", Gate.CONSTANT: ", constant decay",
                     Gate.ROW: ", value-channel gate", Gate.ENTRY: ", per-entry gate"}.get(
                         self.gate, "")
        if layout is not Layout.HEADS:
            base += f" ({LAYOUT_TEXT[layout]})"
        return base


ALGORITHMS = {
    TClass.IDENTITY: "decay-masked chunks (no decay)",
    TClass.CONSTANT_DECAY: "decay-masked chunks",
    TClass.SCALAR_DECAY: "decay-masked chunks, log-space cumsum",
    TClass.DIAGONAL_DECAY: "sub-chunked diagonal decay (sub-chunks of 16)",
    TClass.ROW_DECAY: "decay-masked chunks, log-space cumsum",
    TClass.ENTRY_DECAY: "sub-chunked diagonal decay",
    TClass.DELTA: "UT transform",
    TClass.HOUSEHOLDER: "UT transform over the interleaved sequence",
    TClass.IPLR: "generalised UT transform (I + a b^T)",
    TClass.DPLR: "DPLR chunk form (four intra-chunk matrices, C = 16)",
    TClass.ELEMENTWISE: "sequential scan (no chunk form; slow)",
}

LAYOUT_TEXT = {
    Layout.TRANSPOSED: "state read by columns: transposed",
    Layout.ROWS: "each value channel a head",
    Layout.VECTORS: "each row a head, read whole",
    Layout.ENTRIES: "each entry a head",
}
