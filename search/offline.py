"""The offline proposer: typed mutations and crossover of archive programs, no LLM.

It is the default proposer when no endpoint is configured, and the best-of-N ablation baseline:
with ``ablation_seed_only`` every proposal is one mutation of the seed program, so what the
full search gains over it is what selection, the archive and the proposer's reasoning add.
Each proposal is deterministic in the proposer's seed and its call count, so a resumed run that
replays the same calls proposes the same programs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from linarch.api import MutationError, crossover, mutate
from linarch.search.cognition import MemoryEntry
from linarch.search.proposer import Proposal
from linarch.search.records import Candidate

if TYPE_CHECKING:
    from linarch.search.session import ProposerContext

ORIGIN = "mutation"


class OfflineProposer:
    """Mutates the first parent, or with probability ``crossover_rate`` crosses it with an
    inspiration (one binding taken from the other program), falling back to a mutation."""

    def __init__(self, seed: int, crossover_rate: float = 0.2, ablation_seed_only: bool = False,
                 max_tries: int = 30) -> None:
        if not 0.0 <= crossover_rate <= 1.0:
            raise ValueError(f"crossover_rate must be in [0, 1], got {crossover_rate}")
        self.seed = seed
        self.crossover_rate = crossover_rate
        self.ablation_seed_only = ablation_seed_only
        self.max_tries = max_tries
        self.calls = 0
        self._seed_parent: Candidate | None = None

    def propose(
        self,
        parents: Sequence[Candidate],
        inspirations: Sequence[Candidate],
        memory: Sequence[MemoryEntry],
    ) -> Proposal:
        """Never raises: a failure is a Proposal without a program and ``failure="invalid"``."""
        self.calls += 1
        rng = random.Random(f"offline:{self.seed}:{self.calls}")
        try:
            return self._propose(parents, inspirations, rng)
        except MutationError as err:
            return _failed(str(err))
        except Exception as err:  # noqa: BLE001 - a proposer's bug must not stop the loop
            return _failed(f"offline proposer crashed: {type(err).__name__}: {err}")

    def _propose(self, parents: Sequence[Candidate], inspirations: Sequence[Candidate],
                 rng: random.Random) -> Proposal:
        if not parents:
            raise MutationError("no parent to mutate")
        if self.ablation_seed_only:
            base = self._seed_of(parents)
            m = mutate(base.source, rng.getrandbits(32), max_tries=self.max_tries)
            return Proposal(m.source, f"{m.description} (best-of-N: a mutation of the seed "
                                      f"{base.id})", ORIGIN)
        parent = parents[0]
        donors = [c for c in inspirations if c.source != parent.source]
        if donors and rng.random() < self.crossover_rate:
            donor = rng.choice(donors)
            try:
                m = crossover(parent.source, donor.source, rng.getrandbits(32),
                              max_tries=self.max_tries)
                return Proposal(m.source, f"{m.description} (crossover with {donor.id})", ORIGIN)
            except MutationError:
                pass  # the two programs share no definition that transplants: mutate instead
        m = mutate(parent.source, rng.getrandbits(32), max_tries=self.max_tries)
        return Proposal(m.source, m.description, ORIGIN)

    def _seed_of(self, parents: Sequence[Candidate]) -> Candidate:
        """The seed program: a parent the loop marks as a seed (its best-of-N selection hands
        the seeds over as parents), else the first seed, or failing that the first parent,
        this proposer was ever given."""
        seeds = [p for p in parents if p.origin == "seed"]
        if seeds:
            self._seed_parent = self._seed_parent or seeds[0]
            return seeds[0]
        if self._seed_parent is None:
            self._seed_parent = parents[0]
        return self._seed_parent


def _failed(reason: str) -> Proposal:
    return Proposal(source=None, motivation=reason, origin=ORIGIN, failure="invalid")


def build_offline_proposer(context: ProposerContext) -> OfflineProposer:
    """The factory for ``components.proposer = "linarch.search.offline:build_offline_proposer"``:
    seeded by the run's seed, in best-of-N mode when the islands select only seeds."""
    config = context.config
    return OfflineProposer(seed=config.run.seed,
                           ablation_seed_only=config.islands.selection == "seeds")
