"""Closed intervals of reals: the refinement that proves decays <= 0 and rates in [0, 1].

Interval arithmetic is sound, not tight: a result always contains every value the expression can
take, so a proof from it (say hi <= 0) is a proof about the program.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INF = math.inf


@dataclass(frozen=True)
class Interval:
    lo: float = -INF
    hi: float = INF

    @staticmethod
    def point(v: float) -> Interval:
        return Interval(float(v), float(v))

    def __str__(self) -> str:
        def f(v: float) -> str:
            if v == INF:
                return "inf"
            if v == -INF:
                return "-inf"
            return f"{v + 0.0:g}"  # + 0.0 prints -0.0 as 0

        if self.lo == TINY:  # known to be > 0 (a positive hyper-parameter)
            return f"(0, {f(self.hi)}]"
        return f"[{f(self.lo)}, {f(self.hi)}]"

    @property
    def is_top(self) -> bool:
        return self.lo == -INF and self.hi == INF

    def within(self, lo: float, hi: float) -> bool:
        return lo <= self.lo and self.hi <= hi

    def join(self, other: Interval) -> Interval:
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    def __add__(self, o: Interval) -> Interval:
        return Interval(_add(self.lo, o.lo, -INF), _add(self.hi, o.hi, INF))

    def __neg__(self) -> Interval:
        return Interval(-self.hi, -self.lo)

    def __sub__(self, o: Interval) -> Interval:
        return self + (-o)

    def __mul__(self, o: Interval) -> Interval:
        products = [_mul(a, b) for a in (self.lo, self.hi) for b in (o.lo, o.hi)]
        return Interval(min(products), max(products))

    def reciprocal(self) -> Interval:
        if self.lo >= 0 and self.hi > 0 and self.positive:
            return Interval(_inv(self.hi), _inv(self.lo))
        if self.lo > 0 or self.hi < 0:
            return Interval(_inv(self.hi), _inv(self.lo)).ordered()
        return Interval()

    @property
    def positive(self) -> bool:
        """Strictly positive (lo > 0, or lo == TINY standing for an open bound at 0)."""
        return self.lo > 0

    def __truediv__(self, o: Interval) -> Interval:
        return self * o.reciprocal()

    def ordered(self) -> Interval:
        return Interval(min(self.lo, self.hi), max(self.lo, self.hi))

    def monotone(self, fn) -> Interval:
        """Image under an increasing function defined on the whole interval."""
        return Interval(fn(self.lo), fn(self.hi))


TINY = 5e-324  # lower bound of a quantity known to be > 0 (a positive hyper-parameter)


def _inv(v: float) -> float:
    if v in (INF, -INF):
        return 0.0
    if v == TINY or abs(v) < 1e-300:
        return INF if v > 0 else -INF
    return 1 / v


def _add(a: float, b: float, nan_as: float) -> float:
    s = a + b
    return nan_as if math.isnan(s) else s


def _mul(a: float, b: float) -> float:
    if a == 0 or b == 0:
        return 0.0
    return a * b


def exp(v: float) -> float:
    if v == INF:
        return INF
    if v == -INF:
        return 0.0
    return math.exp(min(v, 700.0)) if v < 700 else INF


def log(v: float) -> float:
    if v <= 0 or v == TINY:  # TINY: known > 0, but not how far from 0
        return -INF
    return INF if v == INF else math.log(v)


def sigmoid(v: float) -> float:
    if v == INF:
        return 1.0
    if v == -INF:
        return 0.0
    return 1 / (1 + math.exp(-v)) if v > -700 else 0.0


def softplus(v: float) -> float:
    if v == INF:
        return INF
    if v == -INF:
        return 0.0
    return v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))


def logsigmoid(v: float) -> float:
    return -softplus(-v)


def tanh(v: float) -> float:
    return math.tanh(v) if abs(v) != INF else math.copysign(1.0, v)


def sqrt(v: float) -> float:
    return math.sqrt(v) if v != INF else INF


def power(base: Interval, exponent: Interval, integer: int | None) -> Interval | None:
    """The range of ``base ** exponent``; ``integer`` is the exponent when it is a known integer.
    None when a real result is not guaranteed (a possibly negative base to a non-integer power:
    NaN)."""
    if integer is not None:
        if integer == 0:
            return Interval(1.0, 1.0)
        n = abs(integer)
        mags = [abs(base.lo), abs(base.hi)]
        if n % 2 == 0:
            lo = 0.0 if base.lo <= 0 <= base.hi else min(mags) ** n
            high = _pow(max(mags), n)
            out = Interval(lo, high)
        else:
            out = Interval(-_pow(-base.lo, n) if base.lo < 0 else _pow(base.lo, n),
                           -_pow(-base.hi, n) if base.hi < 0 else _pow(base.hi, n))
        return out if integer > 0 else out.reciprocal()
    if base.lo < 0:
        return None
    logs = base.monotone(log) * exponent
    return logs.monotone(exp)


def _pow(v: float, n: int) -> float:
    try:
        return v**n
    except OverflowError:
        return INF


def clamp(x: Interval, lo: Interval, hi: Interval) -> Interval:
    """The range of clamp(x, lo, hi) = min(max(x, lo), hi), as torch computes it (also when
    lo > hi, where the result is hi)."""
    low = Interval(max(x.lo, lo.lo), max(x.hi, lo.hi))
    return Interval(min(low.lo, hi.lo), min(low.hi, hi.hi))
