"""The builtin functions of the language: arity, keywords, range rule, and behaviour in time.

The type pass (``passes/typecheck.py``) gives each family its shape rule; the causality pass reads
``time``; the complexity pass reads ``flops``. Adding a builtin is one row here plus, for a new
family, one shape rule there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from linarch.dsl import intervals as iv
from linarch.dsl.intervals import INF, Interval


class Family(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    ELEMENTWISE = "elementwise"  # f(x), same shape
    FEATURE = "feature"  # acts along the last feature axis (or `over = time | batch`)
    COMBINE = "combine"  # elementwise over several broadcast operands
    STRUCTURE = "structure"  # outer, diag, stack, mix, concat, dot
    TIME = "time"  # mixes positions: token_shift, cumsum, attention, ...
    POSITION = "position"  # depends on the position index t itself: rotary, or static: arange


class Time(str, Enum):  # noqa: UP042 - str(member) is part of stored labels
    POINTWISE = "pointwise"  # depends on token t only
    WINDOW = "window"  # depends on tokens t-W+1 .. t
    PREFIX = "prefix"  # depends on tokens 1 .. t
    FUTURE = "future"  # depends on tokens after t: not causal


@dataclass(frozen=True)
class Builtin:
    name: str
    family: Family
    min_args: int = 1
    max_args: int = 1
    keywords: tuple[str, ...] = ()
    range: Callable[[Interval], Interval] | None = None
    flops: int = 1  # per output element
    doc: str = ""
    unit: bool = False  # result has unit L2 norm on the last axis
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def _mono(fn: Callable[[float], float]) -> Callable[[Interval], Interval]:
    return lambda r: r.monotone(fn)


def _silu(r: Interval) -> Interval:
    lo = -0.2785 if r.lo < -1.2785 < r.hi or r.lo <= -1.2785 else r.lo / (1 + math.exp(-r.lo))
    hi = INF if r.hi == INF else (r.hi * iv.sigmoid(r.hi) if r.hi > -1.2785 else 0.0)
    return Interval(min(lo, 0.0) if r.lo < 0 else lo, max(hi, 0.0) if r.hi > 0 else hi)


def _relu(r: Interval) -> Interval:
    return Interval(max(r.lo, 0.0), max(r.hi, 0.0))


def _abs(r: Interval) -> Interval:
    if r.lo >= 0:
        return r
    if r.hi <= 0:
        return -r
    return Interval(0.0, max(-r.lo, r.hi))


def _square(r: Interval) -> Interval:
    a = _abs(r)
    return Interval(a.lo * a.lo, a.hi * a.hi if a.hi != INF else INF)


def _elu(v: float) -> float:
    return v if v >= 0 else (math.exp(v) - 1 if v != -INF else -1.0)


ELEMENTWISE = (
    Builtin("silu", Family.ELEMENTWISE, range=_silu, flops=4, doc="x * sigmoid(x)"),
    Builtin("swish", Family.ELEMENTWISE, range=_silu, flops=4, doc="same as silu"),
    Builtin("sigmoid", Family.ELEMENTWISE, range=_mono(iv.sigmoid), flops=4, doc="rate in [0, 1]"),
    Builtin("tanh", Family.ELEMENTWISE, range=_mono(iv.tanh), flops=4),
    Builtin("relu", Family.ELEMENTWISE, range=_relu),
    Builtin("gelu", Family.ELEMENTWISE, range=lambda r: Interval(-0.17, INF if r.hi > 0 else 0.0),
            flops=8),
    Builtin("elu", Family.ELEMENTWISE, range=_mono(_elu), flops=4),
    Builtin("exp", Family.ELEMENTWISE, range=_mono(iv.exp), flops=2),
    Builtin("log", Family.ELEMENTWISE, range=_mono(iv.log), flops=2),
    Builtin("softplus", Family.ELEMENTWISE, range=_mono(iv.softplus), flops=4),
    Builtin("logsigmoid", Family.ELEMENTWISE, range=_mono(iv.logsigmoid), flops=4,
            doc="log-decay <= 0"),
    Builtin("sqrt", Family.ELEMENTWISE, range=lambda r: Interval(iv.sqrt(max(r.lo, 0.0)),
                                                                 iv.sqrt(max(r.hi, 0.0))), flops=2),
    Builtin("abs", Family.ELEMENTWISE, range=_abs),
    Builtin("round", Family.ELEMENTWISE, range=lambda r: Interval(r.lo - 0.5, r.hi + 0.5),
            doc="to the nearest integer, halves to even (no gradient): for derived sizes"),
    Builtin("square", Family.ELEMENTWISE, range=_square),
)

FEATURE = (
    Builtin("l2norm", Family.FEATURE, unit=True, flops=4, range=lambda r: Interval(-1.0, 1.0),
            doc="x / ||x|| over the last axis: a unit vector"),
    Builtin("softmax", Family.FEATURE, keywords=("over",), flops=5,
            range=lambda r: Interval(0.0, 1.0), doc="over the last axis by default"),
    Builtin("sum", Family.FEATURE, keywords=("over",), doc="sum over the last axis (or `over`)"),
    Builtin("mean", Family.FEATURE, keywords=("over",), doc="mean over the last axis (or `over`)"),
    Builtin("entropy", Family.FEATURE, flops=3, range=lambda r: Interval(0.0, INF),
            doc="-sum p log p over the last axis, for router regularisers"),
)

COMBINE = (
    Builtin("minimum", Family.COMBINE, 2, 2),
    Builtin("maximum", Family.COMBINE, 2, 2),
    Builtin("lerp", Family.COMBINE, 3, 3, flops=3, doc="a + (b - a) * w"),
    Builtin("clamp", Family.COMBINE, 3, 3, doc="clamp(x, lo, hi) with static bounds"),
)

POSITION = (
    Builtin("rotary", Family.POSITION, 1, 1, keywords=("base",), flops=3,
            doc="rotary position embedding over the last axis (non-interleaved halves)"),
    Builtin("arange", Family.POSITION, 1, 1, flops=0,
            doc="the static vector 0, 1, ..., n-1 (per-head constants such as RetNet's gammas)"),
)

STRUCTURE = (
    Builtin("outer", Family.STRUCTURE, 2, 2, doc="outer(a, b)[..., i, j] = a_i b_j"),
    Builtin("diag", Family.STRUCTURE, 1, 1, doc="diagonal matrix from the last axis"),
    Builtin("dot", Family.STRUCTURE, 2, 2, flops=2, doc="sum over the last axis of a * b"),
    Builtin("stack", Family.STRUCTURE, 2, 16, doc="paths stacked on a new axis before the last"),
    Builtin("mix", Family.STRUCTURE, 2, 2, flops=2,
            doc="mix(paths, w): sum_p w[.., p] paths[.., p, :]"),
    Builtin("concat", Family.STRUCTURE, 2, 16, flops=0, doc="concatenate along the last axis"),
    Builtin("slice", Family.STRUCTURE, 3, 3, flops=0,
            doc="slice(x, start, length): features start .. start+length-1 of the last axis"),
)

TIME = (
    Builtin("token_shift", Family.TIME, 1, 1, flops=0, doc="x at t-1 (zeros at t = 1)"),
    Builtin("cumsum", Family.TIME, 1, 1, keywords=("over",), doc="running sum over time"),
    Builtin("reverse_cumsum", Family.TIME, 1, 1, keywords=("over",),
            doc="sum over t..T: reads the future (rejected)"),
    Builtin("fft_conv", Family.TIME, 2, 2, keywords=("causal",),
            doc="global convolution through the FFT"),
    Builtin("attention", Family.TIME, 3, 3, keywords=("causal", "scale"), flops=4,
            doc="softmax attention; quadratic in T, so only in mixers that declare it"),
)

BUILTINS: dict[str, Builtin] = {
    b.name: b for b in ELEMENTWISE + FEATURE + COMBINE + STRUCTURE + TIME + POSITION
}

# names that are values, not functions
RESERVED_VALUES = {"x": "the layer input", "I": "the identity transition",
                   "T": "the sequence length", "time": "the time axis", "batch": "the batch axis"}
