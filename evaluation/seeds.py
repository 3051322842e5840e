"""Which seeds a comparison trains, and after how many it looks at the interval.

A comparison is sequential: it trains the first look's seeds, computes the paired interval, and
stops when the rule has decided (a verdict, or an interval inside the minimum effect); otherwise
it trains the next look's seeds, up to the cap. Clear differences cost a few seeds, close ones
the cap. `SeedSchedule.fixed` is the non-sequential case: all seeds, one look. A racing search
(successive halving over candidates) uses the same type: it asks for a short schedule first and
a longer one for the survivors, and the cached runs of the first are not trained again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class SeedSchedule:
    """`seeds` in the order they are trained; `looks` the numbers of seeds at which to look."""

    seeds: tuple[int, ...]
    looks: tuple[int, ...]

    def __post_init__(self) -> None:
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

    @property
    def cap(self) -> int:
        return len(self.seeds)

    @property
    def sequential_looks(self) -> bool:
        return len(self.looks) > 1

    def describe(self) -> str:
        if not self.sequential_looks:
            return f"{self.cap} seed(s)"
        return f"sequential seeds: look at {', '.join(map(str, self.looks))} (cap {self.cap})"
