"""Which seeds a comparison trains, and after how many it looks at the interval.

A comparison is sequential: it trains the first look's seeds, computes the paired interval, and
stops when the rule has decided (a verdict, or an interval inside the minimum effect); otherwise
it trains the next look's seeds, up to the cap. Clear differences cost a few seeds, close ones
the cap. `SeedSchedule.fixed` is the non-sequential case: all seeds, one look. A racing search
(successive halving over candidates) uses the same type: it asks for a short schedule first and
a longer one for the survivors, and the cached runs of the first are not trained again.

`SeedSchedule.until_precision` asks for a width instead of a verdict: it adds seeds until the
paired interval's half-width is at most the one asked for, whatever the interval says, so a
user who needs 0.03 gets 0.03 (or the cap) at the number of seeds the measured spread needs.
Its stopping depends on the spread alone, never on the mean, so no Bonferroni over looks is
needed; stopping when the spread happens to look small still narrows the interval below its
level, by 1-2 points at 95% (`tests/test_eval_precision.py` simulates it), so `compare`
computes it at 1 - alpha/2, which keeps its coverage above 1 - alpha.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .stats import PairedComparison, t_quantile


@dataclass(frozen=True)
class SeedSchedule:
    """`seeds` in the order they are trained; `looks` the numbers of seeds at which to look.

    With `precision` set, the looks after the first are not fixed: each look adds seeds toward
    the number the measured spread needs for that half-width (at least `step`), to the cap."""

    seeds: tuple[int, ...]
    looks: tuple[int, ...]
    precision: float | None = None
    step: int = 2

    def __post_init__(self) -> None:
        if self.precision is not None and not (self.precision > 0 and
                                               math.isfinite(self.precision)):
            raise ValueError(f"precision (a half-width) must be positive, got {self.precision}")
        if self.step < 1:
            raise ValueError(f"step must be >= 1, got {self.step}")
        if not self.seeds:
            raise ValueError("a seed schedule needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {self.seeds}")
        if not self.looks or list(self.looks) != sorted(set(self.looks)) or \
                self.looks[0] < 1 or self.looks[-1] != len(self.seeds):
            raise ValueError(f"looks {self.looks} must increase from >= 1 to the number of "
                             f"seeds ({len(self.seeds)})")

    @staticmethod
    def fixed(seeds: Iterable[int]) -> SeedSchedule:
        """Every seed, then one look."""
        seeds = tuple(int(s) for s in seeds)
        return SeedSchedule(seeds, (len(seeds),))

    @staticmethod
    def sequential(start: int = 3, step: int = 2, cap: int = 10, first: int = 0) -> SeedSchedule:
        """Seeds first, first+1, ...: look after `start`, then every `step` more, and at `cap`."""
        if not 1 <= start <= cap or step < 1:
            raise ValueError(f"need 1 <= start ({start}) <= cap ({cap}) and step >= 1")
        looks = list(range(start, cap, step)) + [cap]
        return SeedSchedule(tuple(range(first, first + cap)), tuple(sorted(set(looks))))

    @staticmethod
    def until_precision(half_width: float, start: int = 5, cap: int = 40, first: int = 0,
                        step: int = 2) -> SeedSchedule:
        """Seeds first, first+1, ...: look after `start`, then add seeds until the paired
        interval's half-width is at most `half_width` (metric units), or `cap` seeds."""
        if not 2 <= start <= cap:
            raise ValueError(f"need 2 <= start ({start}) <= cap ({cap}): an interval needs two "
                             "seeds")
        return SeedSchedule(tuple(range(first, first + cap)), (start, cap) if start < cap
                            else (cap,), half_width, step)

    def next_look(self, pairs: int, stats: PairedComparison | None) -> int | None:
        """How many seeds the next look has, or None: stop at `pairs` seeds.

        A verdict schedule stops on a decision (a verdict, or an interval inside the minimum
        effect) and otherwise goes to its next look. A precision schedule stops when the
        half-width is reached; otherwise it projects the seeds the measured spread needs (the t
        quantile at each count) and goes halfway there, at least `step` more, so a spread
        overestimated on few seeds does not buy seeds it did not need."""
        if pairs >= self.cap:
            return None
        if self.precision is None:
            if stats is not None and stats.decided:
                return None
            return next((n for n in self.looks if n > pairs), None)
        if stats is None or stats.half_width <= self.precision:  # no baseline: nothing to narrow
            return None
        q = 0.5 + stats.confidence / 2.0
        spread = stats.half_width * math.sqrt(pairs) / t_quantile(q, pairs - 1)
        needed = seeds_needed(self.precision, spread, stats.confidence, pairs + 1, self.cap)
        return min(self.cap, pairs + max(self.step, math.ceil((needed - pairs) / 2)))

    @property
    def cap(self) -> int:
        return len(self.seeds)


def seeds_needed(half_width: float, sd: float, confidence: float, start: int = 2,
                 cap: int | None = None) -> int:
    """The fewest seeds from `start` whose t-interval at `confidence` has at most this
    half-width when the paired differences have this SD (at most `cap`)."""
    q = 0.5 + confidence / 2.0
    n = start
    while (cap is None or n < cap) and t_quantile(q, n - 1) * sd / math.sqrt(n) > half_width:
        n += 1
    return n
