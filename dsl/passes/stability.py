"""Stability of each recurrence: is the transition provably non-expanding?

Read from the typed form alone (``linarch.dsl.recurrence``): each micro-step is a product of
factors, and ``||S F_1 ... F_m|| <= ||S|| prod ||F_j||``, so the state cannot grow when every
factor's norm is at most 1 (the writes then add a bounded amount per token). Bounds come from
the interval analysis, over the declared ranges of the hyper-parameters (never their defaults):

- a run of decays (diagonal, so their product is what multiplies each entry): the product of
  their ranges within [-1, 1]; log-decays add in log space;
- a symmetric rank-one factor ``base + s * rate * u u^T`` is a symmetric matrix, so its norm is
  its largest |eigenvalue|. With ``|u|^2 in [0, 1]`` (u unit) the eigenvalues lie in
  ``{1} + [s rate |u|^2]`` for the identity, ``alpha + ...`` for a scaled identity, and (Weyl)
  ``[min d + min(0, X), max d + max(0, X)]`` for ``Diag(d)``;
- a non-symmetric rank-one factor has no cheap spectral guarantee (LA504).

Warnings, not errors: a transition may be stable for reasons intervals cannot see. Also the
chunk-size check for gates bounded below: the chunk form exponentiates differences of
cumulative log-decays, which stay finite in fp32 when |lb| (C/2 + 1) log2(e) <= 124.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from linarch.dsl import intervals as iv
from linarch.dsl.diagnostics import Reporter
from linarch.dsl.intervals import Interval
from linarch.dsl.recurrence import Base, Decay, DecayForm, Operand, RankOne, Recurrence
from linarch.dsl.unit import Unit

LOG2E = math.log2(math.e)
UNIT = Interval(-1.0, 1.0)


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
    verdicts = tuple(_Check(unit, rec, report).run() for rec in unit.transitions)
    return replace(unit, stability=verdicts)


class _Check:
    def __init__(self, unit: Unit, rec: Recurrence, report: Reporter) -> None:
        self.unit = unit
        self.m = unit.module
        self.rec = rec
        self.report = report
        self.stable = True
        self.reasons: list[str] = []

    def range(self, op: Operand) -> Interval:
        r = self.unit.types[op.node].range
        return r.reciprocal() if op.inverse else r

    def span(self, node: int):
        return self.m.node(node).span or self.m.node(self.rec.update).span

    def warn(self, code: str, message: str, node: int | list[int], hint: str) -> None:
        self.stable = False
        self.report(code, message, self.cover(node), hint)

    def cover(self, nodes: int | list[int]):
        """The span of one node, or from the first to the last of several (a run of decays)."""
        spans = [self.m.node(i).span for i in ([nodes] if isinstance(nodes, int) else nodes)]
        spans = [s for s in spans if s is not None]
        if len(spans) <= 1:
            return spans[0] if spans else self.span(self.rec.update)
        start, end = min(s.start for s in spans), max(s.end for s in spans)
        return self.m.source.span(start, end)

    def run(self) -> Verdict:
        for step in self.rec.steps:
            run: list[Decay] = []
            for f in step.factors:
                if isinstance(f, Decay):
                    run.append(f)
                    continue
                self.decays(run)
                run = []
                self.rank_one(f)
            self.decays(run)
            self.chunk_safety([d for f in step.factors for d in (
                [f] if isinstance(f, Decay) else f.base_decays)])
        return Verdict(self.rec.name, self.stable, tuple(dict.fromkeys(self.reasons)))

    # ------------------------------------------------------------------ decays
    def log_range(self, d: Decay) -> Interval:
        if d.form is DecayForm.LOG:
            return self.range(d.value) if not d.value.inverse else \
                -self.unit.types[d.value.node].range
        return self.range(d.value).monotone(iv.log)

    def multiplier(self, decays: list[Decay]) -> Interval:
        total = Interval(1.0, 1.0)
        for d in decays:
            r = self.log_range(d).monotone(iv.exp) if d.form is DecayForm.LOG else self.range(
                d.value)
            total = total * r
        return total

    def decays(self, run: list[Decay]) -> None:
        if not run:
            return
        name = self.rec.name
        logs = [d for d in run if d.form is DecayForm.LOG]
        if len(run) == len(logs):
            total = Interval(0.0, 0.0)
            for d in logs:
                total = total + self.log_range(d)
            if total.hi > 0:
                self.warn("LA501", f"the log-decay of `{name}` is in {total}: not proven <= 0",
                          run[0].factor, "build it from -exp(.), logsigmoid(.) or -softplus(.) "
                          "so it is <= 0")
            else:
                self.reasons.append(f"log-decay in {total}")
            return
        total = self.multiplier(run)
        if not total.within(-1.0, 1.0):
            what = "decay of" if len(run) == 1 else "decays of"
            verb = "is in" if len(run) == 1 else "multiply to"
            self.warn("LA501", f"the {what} `{name}` {verb} {total}: not proven within [-1, 1]",
                      list(dict.fromkeys(d.written if d.written is not None else d.factor
                                         for d in run)),
                      "write the decay as exp(log_decay) with log_decay <= 0, or sigmoid(.)")
        else:
            self.reasons.append(f"decay in {total}")

    def chunk_safety(self, decays: list[Decay]) -> None:
        logs = [d for d in decays if d.form is not DecayForm.MULTIPLIER]
        if not logs:
            return
        lo = sum(self.log_range(d).lo for d in logs)
        C = self.unit.options.chunk_size
        if lo == -math.inf or abs(lo) * (C / 2 + 1) * LOG2E <= 124:
            return
        self.report("LA505", f"the gate of `{self.rec.name}` can reach {lo:g}: at chunk size {C} "
                    f"exp of cumulative gates overflows fp32 (|lb| (C/2+1) log2 e = "
                    f"{abs(lo) * (C / 2 + 1) * LOG2E:.0f} > 124)", self.span(logs[0].factor),
                    f"use a chunk size <= {max_safe_chunk(lo)} or bound the gate")

    # ------------------------------------------------------------------ rank-one factors
    def rank_one(self, r: RankOne) -> None:
        name = self.rec.name
        what = {Base.DIAGONAL: "DPLR", Base.SCALED: "IPLR", Base.IDENTITY: "IPLR"}[r.base]
        if not r.symmetric:
            self.warn("LA504", f"the {what} transition of `{name}` has no cheap spectral "
                      "guarantee", r.factor, "a symmetric form (the same vector on both sides) "
                      "or a delta rule I - beta * outer(k, k) with unit k and beta in [0, 2] is "
                      "provably stable")
            return
        unit = len(r.u) == 1 and self.unit.types[r.u[0].node].unit and not r.u[0].inverse
        if not unit:
            self.warn("LA503", f"the key of `{name}`'s delta rule is not proven unit-norm",
                      r.factor, "normalise it: k = l2norm(...); I - beta k k^T needs ||k|| = 1")
            return
        rate = Interval(1.0, 1.0)
        for op in r.rate:
            rate = rate * self.range(op)
        x = Interval(float(r.sign), float(r.sign)) * rate * Interval(0.0, 1.0)
        if r.base is Base.IDENTITY:
            eig = Interval(1.0, 1.0).join(Interval(1.0, 1.0) + x)
            if eig.within(-1.0, 1.0):
                self.reasons += [f"beta in {rate}", "k unit"]
                return
            where = r.written_rate if r.written_rate is not None else r.factor
            if r.sign < 0:
                self.warn("LA502", f"the rate of `{name}` is in {rate}: outside [0, 2]", where,
                          "use sigmoid(.) for [0, 1] or 2 * sigmoid(.) for [0, 2] (negative "
                          "eigenvalues)")
            else:
                self.warn("LA502", f"the eigenvalue 1 + rate |k|^2 of `{name}`'s transition is "
                          f"in {eig}: not proven within [-1, 1]", where,
                          "subtract the rank-one term: I - beta * outer(k, k) with beta in [0, 2]")
            return
        base = self.multiplier(list(r.base_decays))
        if r.base is Base.SCALED:
            eig = base.join(base + x)
        else:
            eig = Interval(base.lo + min(0.0, x.lo), base.hi + max(0.0, x.hi))
        if eig.within(-1.0, 1.0):
            self.reasons += ["k unit", f"symmetric {what} with eigenvalues in {eig}"]
            if r.base is Base.DIAGONAL:
                self.reasons.append("symmetric DPLR")
            return
        self.warn("LA502", f"the eigenvalues of `{name}`'s symmetric {what} transition lie in "
                  f"{eig}: not proven within [-1, 1]", r.factor,
                  "keep the base in [0, 1] and the rate small enough that base - rate |k|^2 "
                  ">= -1")
