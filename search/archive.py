"""Selection and diversity: islands of MAP-Elites grids, parent sampling, migration, dedup.

Each island keeps the best program per cell of a grid over descriptors (transition class,
number of paths, log2 state bytes, log2 FLOPs per token), so a cheap diagonal-decay program
is not crowded out by an expensive delta-rule one: each competes in its own cell. Parents are
drawn from an island's elites by rank (a power law over the ranking) or by UCB1, where an
elite's reward is the share of its children that beat it. Every `migration_interval`
evaluations, each island sends its best elites to the next island on a ring.

A candidate is rejected before any training if its structural hash was already seen (the
compiler's hash: same computation, any names), or if its Weisfeiler-Lehman similarity to an
evaluated program is at or above `near_duplicate` (novelty.py). No LLM is asked.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from linarch.search.novelty import NoveltyIndex
from linarch.search.records import Candidate, Profile


class Rejection(StrEnum):
    DUPLICATE = "duplicate"
    NEAR_DUPLICATE = "near_duplicate"


@dataclass(frozen=True)
class NoveltyCheck:
    rejection: Rejection | None
    nearest: str | None  # the id of the most similar program seen before
    similarity: float  # 0.0 when nothing was seen before

    @property
    def novelty(self) -> float:
        return 1.0 - self.similarity


@dataclass(frozen=True)
class Placement:
    island: int
    cell: tuple[str, int, int, int]
    elite: bool  # it took the cell (empty, or it beat the cell's previous elite)
    replaced: str | None


@dataclass
class _Arm:
    visits: int = 0
    wins: float = 0.0


class Island:
    def __init__(self, index: int):
        self.index = index
        self.grid: dict[tuple[str, int, int, int], Candidate] = {}

    def elites(self) -> list[Candidate]:
        """Best first (ties: older id first, for determinism)."""
        return sorted(self.grid.values(), key=lambda c: (_neg(c.rank_key), c.id))

    def offer(self, candidate: Candidate) -> Placement:
        cell = candidate.profile.descriptor.cell
        current = self.grid.get(cell)
        if current is None or candidate.rank_key > current.rank_key:
            self.grid[cell] = candidate
            return Placement(self.index, cell, True, None if current is None else current.id)
        return Placement(self.index, cell, False, None)


class Archive:
    def __init__(
        self,
        islands: int = 2,
        *,
        selection: str = "ucb",
        ucb_c: float = 1.0,
        rank_exponent: float = 1.0,
        near_duplicate: float = 0.95,
    ):
        if selection not in ("ucb", "rank", "seeds"):
            raise ValueError(f"unknown selection {selection!r}")
        self.islands = [Island(i) for i in range(islands)]
        self.selection = selection
        self.ucb_c = ucb_c
        self.rank_exponent = rank_exponent
        self.near_duplicate = near_duplicate
        self.candidates: dict[str, Candidate] = {}  # every evaluated candidate, by id
        self.seeds: list[str] = []
        self._hashes: dict[str, str] = {}  # structural hash -> candidate id (seen or reserved)
        self._novelty = NoveltyIndex()
        self._arms: dict[str, _Arm] = {}

    # ------------------------------------------------------------------ dedup

    def check(self, profile: Profile) -> NoveltyCheck:
        """Would this program be a duplicate or a near-duplicate of one already seen?"""
        nearest, sim = self._novelty.nearest(profile.features())
        if profile.structural_hash in self._hashes:
            return NoveltyCheck(Rejection.DUPLICATE, self._hashes[profile.structural_hash], 1.0)
        if nearest is not None and profile.wl_features and sim >= self.near_duplicate:
            return NoveltyCheck(Rejection.NEAR_DUPLICATE, nearest, sim)
        return NoveltyCheck(None, nearest, sim if nearest is not None else 0.0)

    def reserve(self, candidate_id: str, profile: Profile) -> None:
        """Claim a program's hash and features before it is evaluated (in flight counts)."""
        self._hashes.setdefault(profile.structural_hash, candidate_id)
        if profile.wl_features:
            self._novelty.add(candidate_id, profile.features())

    # ------------------------------------------------------------------ insertion

    def add(self, candidate: Candidate, *, seed: bool = False) -> list[Placement]:
        """Record an evaluated candidate: a seed goes to every island, others to their own."""
        self.reserve(candidate.id, candidate.profile)
        self.candidates[candidate.id] = candidate
        self._arms.setdefault(candidate.id, _Arm())
        if candidate.result is None:  # failed evaluation: known, but never an elite
            return []
        if seed:
            self.seeds.append(candidate.id)
            return [island.offer(candidate) for island in self.islands]
        return [self.islands[candidate.island % len(self.islands)].offer(candidate)]

    def credit(self, parent_id: str, child: Candidate | None) -> None:
        """UCB bookkeeping: a child (None = invalid or failed) counts as a visit; a win if it
        beat its parent."""
        arm = self._arms.setdefault(parent_id, _Arm())
        arm.visits += 1
        parent = self.candidates.get(parent_id)
        if child is not None and parent is not None and child.rank_key > parent.rank_key:
            arm.wins += 1.0

    def apply_migration(self, moves: Sequence[tuple[int, int, str]]) -> None:
        for _, dst, cid in moves:
            self.islands[dst].offer(self.candidates[cid])

    def migration_moves(self, count: int = 1) -> list[tuple[int, int, str]]:
        """Each island's `count` best elites go to the next island on the ring (not applied:
        the loop journals the moves, then applies them with apply_migration)."""
        moves: list[tuple[int, int, str]] = []
        n = len(self.islands)
        if n < 2:
            return moves
        for island in self.islands:
            dst = self.islands[(island.index + 1) % n]
            for elite in island.elites()[:count]:
                if dst.grid.get(elite.profile.descriptor.cell) is not elite:
                    moves.append((island.index, dst.index, elite.id))
        return moves

    # ------------------------------------------------------------------ sampling

    def sample_parent(self, island: int, rng: random.Random) -> Candidate:
        pool = self._pool(island)
        if not pool:
            raise LookupError("the archive holds no evaluated program to start from")
        if self.selection == "ucb":
            return self._ucb(pool, rng)
        if self.selection == "rank":
            weights = [1.0 / (rank + 1) ** self.rank_exponent for rank in range(len(pool))]
            return rng.choices(pool, weights=weights, k=1)[0]
        return rng.choice(pool)

    def sample_inspirations(
        self, island: int, rng: random.Random, k: int, exclude: Sequence[str] = ()
    ) -> list[Candidate]:
        """Up to k other elites: the island's best, plus one from another island if any."""
        if k <= 0 or self.selection == "seeds":
            return []
        taken = set(exclude)
        own = [c for c in self.islands[island].elites() if c.id not in taken]
        picks = own[: max(k - 1, 1)]
        taken.update(c.id for c in picks)
        others = [
            c for isl in self.islands if isl.index != island for c in isl.elites()
            if c.id not in taken
        ]
        if others and len(picks) < k:
            picks.append(rng.choice(others))
        return picks[:k]

    def _pool(self, island: int) -> list[Candidate]:
        if self.selection == "seeds":  # best-of-N ablation: always start from the seeds
            return [self.candidates[s] for s in self.seeds if self.candidates[s].result]
        return self.islands[island].elites()

    def _ucb(self, pool: list[Candidate], rng: random.Random) -> Candidate:
        arms = [self._arms.setdefault(c.id, _Arm()) for c in pool]
        unvisited = [c for c, a in zip(pool, arms) if a.visits == 0]
        if unvisited:
            return unvisited[0]  # pool is best-first: try the best untried elite
        total = sum(a.visits for a in arms)
        scores = [
            a.wins / a.visits + self.ucb_c * math.sqrt(2 * math.log(total) / a.visits)
            for a in arms
        ]
        best = max(scores)
        ties = [c for c, s in zip(pool, scores) if s >= best - 1e-12]
        return ties[0] if len(ties) == 1 else rng.choice(ties)

    # ------------------------------------------------------------------ views

    def best(self) -> Candidate | None:
        evaluated = [c for c in self.candidates.values() if c.result is not None]
        return max(evaluated, key=lambda c: c.rank_key, default=None)  # ties: the earlier

    def arm(self, candidate_id: str) -> tuple[int, float]:
        a = self._arms.get(candidate_id, _Arm())
        return a.visits, a.wins


def _neg(key: tuple[int, float]) -> tuple[int, float]:
    return (-key[0], -key[1])
