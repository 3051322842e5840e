"""The offline proposer: typed mutations, crossover and recombination of archive programs.

It is the default proposer when no endpoint is configured, and the best-of-N ablation baseline:
with ``ablation_seed_only`` every proposal is one mutation of the seed program, so what the
full search gains over it is what selection, the archive and the proposer's reasoning add.

Each proposal is deterministic in the run's seed and the candidate's index (never in how many
times this object was called), so a resumed run proposes for c0012 what the killed run would
have, and never again what it proposed for c0003. The moves run through the front end's
guard, like every compiler call of the search: a pathological program cannot hang them.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from linarch.search.proposer import Proposal, ProposalRequest
from linarch.search.records import Candidate

if TYPE_CHECKING:
    from linarch.search.frontend import FrontEnd
    from linarch.search.session import ProposerContext

ORIGIN = "mutation"
MOVES = ("mutate", "crossover", "recombine")


def offline_move(kind: str, a: str, b: str | None, seed: int, max_tries: int) -> dict[str, Any]:
    """One move of the mutation engine as plain data (it may run in the guard's worker):
    {"source", "operators", "description", "tries"} or {"error": why not}."""
    from linarch.api import MutationError, crossover, mutate, recombine

    try:
        if kind == "mutate":
            m = mutate(a, seed, max_tries=max_tries)
        elif kind == "crossover":
            m = crossover(a, b or "", seed, max_tries=max_tries)
        elif kind == "recombine":
            m = recombine(a, b or "", seed, max_tries=max_tries)
        else:
            raise ValueError(f"unknown move {kind!r}; moves: {', '.join(MOVES)}")
    except MutationError as err:
        return {"error": str(err)}
    return {"source": m.source, "operators": list(m.operators), "description": m.description,
            "tries": m.tries}


class OfflineProposer:
    """Mutates the first parent; with probability ``crossover_rate`` crosses it with an
    inspiration (one binding taken from the other program), with ``recombine_rate`` adds an
    inspiration's state as a second memory; a move that finds nothing falls back to a
    mutation."""

    def __init__(self, seed: int, crossover_rate: float = 0.2, ablation_seed_only: bool = False,
                 max_tries: int = 30, recombine_rate: float = 0.1,
                 frontend: FrontEnd | None = None) -> None:
        for name, rate in (("crossover_rate", crossover_rate), ("recombine_rate", recombine_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        if crossover_rate + recombine_rate > 1.0:
            raise ValueError("crossover_rate + recombine_rate must be <= 1")
        self.seed = seed
        self.crossover_rate = crossover_rate
        self.recombine_rate = recombine_rate
        self.ablation_seed_only = ablation_seed_only
        self.max_tries = max_tries
        self.frontend = frontend
        self._seed_parent: Candidate | None = None

    def propose(self, request: ProposalRequest) -> Proposal:
        """Never raises for a program's sake: a failure is a Proposal without a program and
        ``failure="invalid"`` (or "move_timeout" when the guard stopped a move)."""
        rng = random.Random(f"offline:{self.seed}:{request.index}")
        try:
            return self._propose(request, rng)
        except Exception as err:  # noqa: BLE001 - a proposer's bug must not stop the loop
            from linarch.search.guard import GuardTimeout

            failure = "move_timeout" if isinstance(err, GuardTimeout) else "invalid"
            return _failed(f"offline proposer: {type(err).__name__}: {err}", failure)

    def _move(self, kind: str, a: str, b: str | None, seed: int) -> dict[str, Any]:
        if self.frontend is None:
            return offline_move(kind, a, b, seed, self.max_tries)
        return self.frontend.run(offline_move, kind, a, b, seed, self.max_tries)

    def _propose(self, request: ProposalRequest, rng: random.Random) -> Proposal:
        parents = request.parents
        if not parents:
            return _failed("no parent to mutate")
        if self.ablation_seed_only:
            base = self._seed_of(parents)
            out = self._move("mutate", base.source, None, rng.getrandbits(32))
            if "error" in out:
                return _failed(out["error"])
            return Proposal(out["source"], f"{out['description']} (best-of-N: a mutation of "
                            f"the seed {base.id})", ORIGIN)
        parent = parents[0]
        donors = [c for c in request.inspirations if c.source != parent.source]
        draw = rng.random()
        if donors and draw < self.crossover_rate + self.recombine_rate:
            kind = "crossover" if draw < self.crossover_rate else "recombine"
            donor = rng.choice(donors)
            out = self._move(kind, parent.source, donor.source, rng.getrandbits(32))
            if "error" not in out:
                what = "crossover" if kind == "crossover" else "recombination"
                return Proposal(out["source"], f"{out['description']} ({what} with "
                                f"{donor.id})", ORIGIN)
        out = self._move("mutate", parent.source, None, rng.getrandbits(32))
        if "error" in out:
            return _failed(out["error"])
        return Proposal(out["source"], out["description"], ORIGIN)

    def _seed_of(self, parents: tuple[Candidate, ...]) -> Candidate:
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


def _failed(reason: str, failure: str = "invalid") -> Proposal:
    return Proposal(source=None, motivation=reason, origin=ORIGIN, failure=failure)


def build_offline_proposer(context: ProposerContext) -> OfflineProposer:
    """The factory for ``components.proposer = "linarch.search.offline:build_offline_proposer"``:
    seeded by the run's seed, in best-of-N mode when the islands select only seeds, its moves
    behind the run's front-end guard."""
    config = context.config
    return OfflineProposer(seed=config.run.seed,
                           ablation_seed_only=config.islands.selection == "seeds",
                           frontend=getattr(context, "frontend", None))
