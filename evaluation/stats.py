"""Paired comparison of a candidate against its baseline over seeds.

Seed k of the candidate and seed k of the baseline see the same data and the same budget, so
the per-seed differences are paired and the seed-to-seed spread of the task cancels. The verdict
is BETTER (or WORSE) only when the Student-t interval of the mean difference excludes zero on
that side and the mean difference is at least the rule's minimum effect; anything else,
including fewer than two pairs, is INDISTINGUISHABLE. A minimum effect keeps a comparison that
looks again after each new seed (sequential seeds) from calling a tiny, lucky difference a gain.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass
from statistics import fmean, stdev


class Alternative(enum.Enum):
    """What a t-test's p-value is the chance of, under "no difference"."""

    GREATER = "greater"        # a mean difference this large or larger
    TWO_SIDED = "two-sided"    # one this far from zero, either way


class Verdict(enum.Enum):
    BETTER = "better"
    WORSE = "worse"
    INDISTINGUISHABLE = "indistinguishable"


@dataclass(frozen=True)
class DecisionRule:
    """What a verdict needs: an interval at `confidence` that excludes zero, and a mean
    difference of at least `min_effect` (metric units) in the verdict's direction."""

    confidence: float = 0.95
    min_effect: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.min_effect < 0:
            raise ValueError(f"min_effect must be >= 0, got {self.min_effect}")


def level(confidence: float) -> str:
    """An interval's level as printed: 95%, 97.5% (the proxy's per-look level)."""
    return f"{100 * confidence:.3g}%"


@dataclass(frozen=True)
class PairedComparison:
    """Candidate minus baseline, in the metric's own units (positive = larger metric)."""

    metric: str
    higher_is_better: bool
    candidate: tuple[float, ...]
    baseline: tuple[float, ...]
    mean_difference: float
    ci_low: float
    ci_high: float
    confidence: float
    verdict: Verdict
    min_effect: float = 0.0

    @property
    def pairs(self) -> int:
        return len(self.candidate)

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2.0

    @property
    def equivalent(self) -> bool:
        """The whole interval lies within +-min_effect: no difference of that size remains."""
        return self.min_effect > 0 and -self.min_effect < self.ci_low and \
            self.ci_high < self.min_effect

    def p_value(self, alternative: Alternative = Alternative.TWO_SIDED) -> float:
        """The paired t-test of "no difference" on these pairs (1 with fewer than two)."""
        diffs = [c - b for c, b in zip(self.candidate, self.baseline)]
        n = len(diffs)
        if n < 2:
            return 1.0
        return t_test_p(self.mean_difference, stdev(diffs) / math.sqrt(n), n - 1, alternative)

    @property
    def decided(self) -> bool:
        """A verdict, or an equivalence: more seeds would not change what a user does."""
        return self.verdict is not Verdict.INDISTINGUISHABLE or self.equivalent


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                    -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_test_p(mean: float, standard_error: float, df: float,
             alternative: Alternative = Alternative.TWO_SIDED) -> float:
    """P-value of a t statistic mean / standard_error; an exact mean (SE 0) is certain."""
    if standard_error <= 0.0:
        if mean == 0.0:
            return 1.0
        return 0.0 if mean > 0 or alternative is Alternative.TWO_SIDED else 1.0
    t = mean / standard_error
    if alternative is Alternative.GREATER:
        return 1.0 - t_cdf(t, df)
    return min(1.0, 2.0 * (1.0 - t_cdf(abs(t), df)))


@functools.lru_cache(maxsize=1024)
def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection (the CDF is monotone); memoised, because a
    sequential schedule asks for the same few levels and counts again and again."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    return 0.5 * (low + high)


def paired_comparison(
    metric: str,
    higher_is_better: bool,
    candidate: list[float] | tuple[float, ...],
    baseline: list[float] | tuple[float, ...],
    confidence: float = 0.95,
    min_effect: float = 0.0,
) -> PairedComparison:
    """Mean paired difference with its t-interval, and the verdict it supports."""
    DecisionRule(confidence, min_effect)  # validates both
    if len(candidate) != len(baseline):
        raise ValueError(f"{len(candidate)} candidate values against {len(baseline)} baseline")
    diffs = [c - b for c, b in zip(candidate, baseline)]
    n = len(diffs)
    mean = fmean(diffs) if n else math.nan
    if n >= 2:
        half = t_quantile(0.5 + confidence / 2.0, n - 1) * stdev(diffs) / math.sqrt(n)
        low, high = mean - half, mean + half
    else:
        low, high = -math.inf, math.inf
    verdict = Verdict.INDISTINGUISHABLE
    if n >= 2 and ((low > 0 and mean >= min_effect) or (high < 0 and mean <= -min_effect)):
        larger = low > 0
        verdict = Verdict.BETTER if larger == higher_is_better else Verdict.WORSE
    return PairedComparison(metric, higher_is_better, tuple(candidate), tuple(baseline), mean,
                            low, high, confidence, verdict, min_effect)
