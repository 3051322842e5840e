"""Stability of each transition: is |eig(A_t)| <= 1 provable from the types?

Warnings, not errors: a transition may be stable for reasons the interval analysis cannot see.
Also the chunk-size safety check for gates bounded below: the chunk form exponentiates
differences of cumulative log-decays, which stay finite in fp32 when
|lb| (C/2 + 1) log2(e) <= 124.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from linarch.dsl.diagnostics import Reporter
from linarch.dsl.intervals import Interval
from linarch.dsl.passes.transitions import TClass, Transition
from linarch.dsl.unit import Unit

LOG2E = math.log2(math.e)


@dataclass(frozen=True)
class Verdict:
    state: str
    stable: bool
    reasons: tuple[str, ...]

    def __str__(self) -> str:
        head = "|eig| <= 1" if self.stable else "not proven stable"
        return f"{head} ({'; '.join(self.reasons)})" if self.reasons else head


def max_safe_chunk(lower_bound: float) -> int:
    """The largest chunk size C with |lb| (C/2 + 1) log2 e <= 124."""
    if lower_bound == 0:
        return 1 << 30
    return max(0, int(2 * (124 / (abs(lower_bound) * LOG2E) - 1)))


def stability(unit: Unit, report: Reporter) -> Unit:
    verdicts = tuple(_check(unit, tr, report) for tr in unit.transitions)
    return replace(unit, stability=verdicts)


def _range(unit: Unit, i: int | None) -> Interval:
    return unit.types[i].range if i is not None else Interval(1.0, 1.0)


def _divides(tr: Transition, i: int) -> bool:
    """Whether factor ``i`` divides the state (S / x: steps record it as -i - 1)."""
    return any(-i - 1 in step.scales for step in tr.steps)


def _check(unit: Unit, tr: Transition, report: Reporter) -> Verdict:
    m = unit.module
    span = m.node(tr.update).span
    stable = True
    reasons: list[str] = []
    C = unit.options.chunk_size
    for d in tr.decays:
        if d.log is not None:
            r = -_range(unit, d.log) if _divides(tr, d.node) else _range(unit, d.log)
            if r.hi > 0:
                stable = False
                report("LA501", f"the log-decay of `{tr.name}` is in {r}: not proven <= 0",
                       m.node(d.node).span or span,
                       "build it from -exp(.), logsigmoid(.) or -softplus(.) so it is <= 0")
            else:
                reasons.append(f"log-decay in {r}")
                if r.lo != -math.inf and abs(r.lo) * (C / 2 + 1) * LOG2E > 124:
                    report("LA505", f"the gate of `{tr.name}` can reach {r.lo:g}: at chunk size {C}"
                           f" exp of cumulative gates overflows fp32 (|lb| (C/2+1) log2 e = "
                           f"{abs(r.lo) * (C / 2 + 1) * LOG2E:.0f} > 124)",
                           m.node(d.node).span or span,
                           f"use a chunk size <= {max_safe_chunk(r.lo)} or bound the gate")
        else:
            r = _range(unit, d.node)
            r = r.reciprocal() if _divides(tr, d.node) else r
            if not r.within(-1.0, 1.0):
                stable = False
                report("LA501", f"the decay of `{tr.name}` is in {r}: not proven within [-1, 1]",
                       m.node(d.node).span or span,
                       "write the decay as exp(log_decay) with log_decay <= 0, or sigmoid(.)")
            else:
                reasons.append(f"decay in {r}")
    for f in tr.elementwise:
        r = _range(unit, f).reciprocal() if _divides(tr, f) else _range(unit, f)
        if not r.within(-1.0, 1.0):
            stable = False
            report("LA501", f"the elementwise factor of `{tr.name}` is in {r}: not proven "
                   "within [-1, 1]", m.node(f).span or span, "use sigmoid(.) or exp(-softplus(.))")
    for r1 in tr.rank_ones:
        if r1.base is not None or tr.cls is TClass.IPLR:
            if r1.u == r1.w and r1.base is not None:
                reasons.append("symmetric DPLR")
                continue
            stable = False
            what = "DPLR" if r1.base is not None else "IPLR"
            report("LA504", f"the {what} transition of `{tr.name}` has no cheap spectral "
                   "guarantee", m.node(r1.node).span or span,
                   "a symmetric form (the same vector on both sides) or a delta rule "
                   "I - beta * outer(k, k) with unit k and beta in [0, 2] is provably stable")
            continue
        rate = _range(unit, r1.rate)
        if not rate.within(0.0, 2.0):
            stable = False
            report("LA502", f"the rate of `{tr.name}` is in {rate}: outside [0, 2]",
                   m.node(r1.rate).span if r1.rate is not None else span,
                   "use sigmoid(.) for [0, 1] or 2 * sigmoid(.) for [0, 2] (negative eigenvalues)")
        else:
            reasons.append(f"beta in {rate}")
        if not unit.types[r1.u].unit:
            stable = False
            report("LA503", f"the key of `{tr.name}`'s delta rule is not proven unit-norm",
                   m.node(r1.node).span or span,
                   "normalise it: k = l2norm(...); I - beta k k^T needs ||k|| = 1")
        else:
            reasons.append("k unit")
    return Verdict(tr.name, stable, tuple(dict.fromkeys(reasons)))
