"""Selection and diversity: islands of MAP-Elites grids, parent sampling, migration, dedup.

Each island keeps the best program per cell of a grid over descriptors (transition class,
number of paths, log2 state bytes and log2 FLOPs per token at the shape the candidate is
trained at), so a cheap diagonal-decay program is not crowded out by an expensive delta-rule
one: each competes in its own cell. "Best" is `Candidate.rank_key`: the furthest cascade
stage, then the lower bound of the 95% interval, so a lucky mean on a wide interval does not
take a cell. The grid is computed from the island's members whenever it is read, so a
candidate whose score changes (more seeds, `rescore`) moves in or out of its cell at once.

Parents are drawn from an island's elites:

    weighted  ShinkaEvolve's rule: w = sigmoid(lambda (F - median F) / spread) / (1 + children),
              F = mean - z standard errors (a one-sided lower bound; z = 1 by default, since
              with 3 seeds the 95% bound is mostly the noise of the spread's own estimate);
              good parents are drawn often, and every child drawn from a parent divides its
              pull, so no parent is mined forever (the default)
    rank      a power law over the ranking, with the same offspring penalty
    ucb       UCB1 on "a child beat its parent" (the old rule, kept as an ablation: it rewards
              weak parents, whose children beat them easily)
    seeds     best-of-N: always a seed program

Every `migration_interval` evaluations, each island sends its best elites to the next island
on a ring. Duplicates are refused before any training (novelty.py): the compiler's structural
hash, Weisfeiler-Lehman similarity of the IR, and the behavioural fingerprint.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from linarch.evaluation.stats import t_quantile
from linarch.search.novelty import BehaviourIndex, NoveltyIndex
from linarch.search.records import Candidate, EvalResult, Profile

Cell = tuple[str, int, int, int]


class Rejection(StrEnum):
    DUPLICATE = "duplicate"  # the same graph and hyper-parameters (structural hash)
    NEAR_DUPLICATE = "near_duplicate"  # WL similarity at or above islands.near_duplicate
    EQUIVALENT = "equivalent"  # computes the same function (behavioural fingerprint)


class Selection(StrEnum):
    WEIGHTED = "weighted"
    RANK = "rank"
    UCB = "ucb"
    SEEDS = "seeds"


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
    cell: Cell
    elite: bool  # it holds the cell (empty, or it beat the cell's previous elite)
    replaced: str | None


@dataclass
class _Arm:
    visits: int = 0
    wins: float = 0.0


class Island:
    """The candidates an island holds; its grid is the best member per cell."""

    def __init__(self, index: int):
        self.index = index
        self.members: dict[str, Candidate] = {}

    @property
    def grid(self) -> dict[Cell, Candidate]:
        grid: dict[Cell, Candidate] = {}
        for c in sorted(self.members.values(), key=lambda c: c.id):  # ties: the older id
            if c.result is None:
                continue
            cell = c.profile.descriptor.cell
            if cell not in grid or c.rank_key > grid[cell].rank_key:
                grid[cell] = c
        return grid

    def elites(self) -> list[Candidate]:
        """Best first (ties: older id first, for determinism)."""
        return sorted(self.grid.values(), key=lambda c: (_neg(c.rank_key), c.id))

    def offer(self, candidate: Candidate) -> Placement:
        cell = candidate.profile.descriptor.cell
        before = self.grid.get(cell)
        self.members[candidate.id] = candidate
        now = self.grid.get(cell)
        elite = now is not None and now.id == candidate.id
        replaced = before.id if elite and before is not None and before.id != candidate.id else None
        return Placement(self.index, cell, elite, replaced)


class Archive:
    def __init__(
        self,
        islands: int = 2,
        *,
        selection: str = "weighted",
        ucb_c: float = 1.0,
        rank_exponent: float = 1.0,
        weight_lambda: float = 10.0,
        selection_z: float = 1.0,
        near_duplicate: float = 1.0,
        behaviour_tolerance: float = 1e-6,
    ):
        self.islands = [Island(i) for i in range(islands)]
        self.selection = Selection(selection)
        self.ucb_c = ucb_c
        self.rank_exponent = rank_exponent
        self.weight_lambda = weight_lambda
        self.selection_z = selection_z
        self.near_duplicate = near_duplicate
        self.candidates: dict[str, Candidate] = {}  # every evaluated candidate, by id
        self.seeds: list[str] = []
        self._hashes: dict[str, str] = {}  # structural hash -> candidate id (seen or reserved)
        self._novelty = NoveltyIndex()
        self._behaviour = BehaviourIndex(behaviour_tolerance)
        self._arms: dict[str, _Arm] = {}
        self._children: dict[str, int] = {}

    # ------------------------------------------------------------------ dedup

    def check(self, profile: Profile) -> NoveltyCheck:
        """Would this program be a duplicate or a near-duplicate of one already seen?"""
        nearest, sim = self._novelty.nearest(profile.features())
        if profile.structural_hash in self._hashes:
            return NoveltyCheck(Rejection.DUPLICATE, self._hashes[profile.structural_hash], 1.0)
        if nearest is not None and profile.wl_features and sim >= self.near_duplicate:
            return NoveltyCheck(Rejection.NEAR_DUPLICATE, nearest, sim)
        return NoveltyCheck(None, nearest, sim if nearest is not None else 0.0)

    def check_behaviour(self, fingerprint: Sequence[float]) -> NoveltyCheck:
        """Does an earlier program compute the same function (up to the tolerance)? The
        similarity reported is 1 - the relative distance to the nearest fingerprint."""
        nearest, distance = self._behaviour.nearest(fingerprint)
        if nearest is None:
            return NoveltyCheck(None, None, 0.0)
        similarity = max(0.0, 1.0 - distance)
        if distance <= self._behaviour.tolerance:
            return NoveltyCheck(Rejection.EQUIVALENT, nearest, similarity)
        return NoveltyCheck(None, nearest, similarity)

    def reserve(self, candidate_id: str, profile: Profile) -> None:
        """Claim a program's hash, features and fingerprint before it is evaluated (in
        flight counts as seen)."""
        self._hashes.setdefault(profile.structural_hash, candidate_id)
        if profile.wl_features:
            self._novelty.add(candidate_id, profile.features())
        if profile.fingerprint:
            self._behaviour.add(candidate_id, profile.fingerprint)

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

    def replace(self, candidate: Candidate) -> None:
        """Swap in an updated copy of an archived candidate (same id) wherever it is held."""
        self.candidates[candidate.id] = candidate
        for island in self.islands:
            if candidate.id in island.members:
                island.members[candidate.id] = candidate

    def rescore(self, candidate_id: str, result: EvalResult,
                stages_passed: int | None = None) -> Candidate:
        """A candidate's score changed (seeds were added, a confirmation stage ran): it keeps
        its islands, and every grid reads the new score from now on."""
        old = self.candidates[candidate_id]
        new = replace(old, result=result, stages_passed=old.stages_passed
                      if stages_passed is None else stages_passed)
        self.replace(new)
        if new.result is not None and not any(candidate_id in i.members for i in self.islands):
            islands = self.islands if old.origin == "seed" else [
                self.islands[old.island % len(self.islands)]]
            for island in islands:
                island.offer(new)
        return new

    def note_child(self, parent_id: str) -> None:
        """A proposal was started from this parent (the offspring penalty's count)."""
        self._children[parent_id] = self._children.get(parent_id, 0) + 1

    def children(self, candidate_id: str) -> int:
        return self._children.get(candidate_id, 0)

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
            grid = dst.grid
            for elite in island.elites()[:count]:
                held = grid.get(elite.profile.descriptor.cell)
                if held is None or held.id != elite.id:
                    moves.append((island.index, dst.index, elite.id))
        return moves

    # ------------------------------------------------------------------ sampling

    def sample_parent(self, island: int, rng: random.Random) -> Candidate:
        pool = self._pool(island)
        if not pool:
            raise LookupError("the archive holds no evaluated program to start from")
        if self.selection is Selection.UCB:
            return self._ucb(pool, rng)
        if self.selection is Selection.SEEDS:
            return rng.choice(pool)
        weights = self.weights(pool)
        return rng.choices(pool, weights=weights, k=1)[0]

    def weights(self, pool: Sequence[Candidate]) -> list[float]:
        """Selection weights of a best-first pool under the weighted or rank rule."""
        penalty = [1.0 / (1 + self.children(c.id)) for c in pool]
        if self.selection is Selection.RANK:
            return [p / (rank + 1) ** self.rank_exponent for rank, p in enumerate(penalty)]
        fitness = [_fitness(c, self.selection_z) for c in pool]
        finite = [f for f in fitness if math.isfinite(f)]
        if not finite:
            return penalty
        middle = statistics.median(finite)
        spread = _spread(finite)
        out = []
        for f, p in zip(fitness, penalty):
            z = self.weight_lambda * (f - middle) / spread if math.isfinite(f) else -math.inf
            out.append(p * _sigmoid(z))
        return out if sum(out) > 0 else penalty

    def sample_inspirations(
        self, island: int, rng: random.Random, k: int, exclude: Sequence[str] = ()
    ) -> list[Candidate]:
        """Up to k other elites: the island's best, plus one from another island if any."""
        if k <= 0 or self.selection is Selection.SEEDS:
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
        if self.selection is Selection.SEEDS:  # best-of-N ablation: always start from the seeds
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


def standard_error(result: EvalResult) -> float | None:
    """The standard error behind a result's 95% t interval (None when it is unknown)."""
    if not math.isfinite(result.ci_low):
        return None
    n = len(result.seeds)
    crit = t_quantile(0.975, n - 1) if n >= 2 else 1.96
    return max(0.0, result.score - result.ci_low) / crit


def _fitness(c: Candidate, z: float) -> float:
    """What the weighted rule compares: mean - z standard errors; the mean when the spread is
    unknown (a single seed), so an unmeasured spread neither wins nor vanishes."""
    if c.result is None:
        return -math.inf
    se = standard_error(c.result)
    return c.score if se is None else c.score - z * se


def _spread(values: Sequence[float]) -> float:
    """A robust scale of the pool's fitness (the interquartile range; 1 when it is 0), so that
    the weighted rule's pressure does not depend on the units of the score."""
    if len(values) < 2:
        return 1.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    iqr = q[2] - q[0]
    if iqr > 0:
        return iqr
    span = max(values) - min(values)
    return span if span > 0 else 1.0


def _sigmoid(z: float) -> float:
    if z == -math.inf:
        return 0.0
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _neg(key: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(-k for k in key)
