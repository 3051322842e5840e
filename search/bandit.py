"""Which model writes the next program: UCB1 over a role's models, rewarded by the children.

A role configured with several models (`researcher = ["gpt-4o-mini", "o3-mini"]`) gets one
chosen per proposal. A proposal's reward is 1 when its program was evaluated and beat its
parent's lower bound, else 0 (invalid, rejected, failed, or no better): what a model is worth
to the search is the improvements it brings, not the programs it writes. Untried models are
tried first, in the configured order; ties are broken by the proposal's own seeded generator,
so a resumed run (which rebuilds the counts from the journal) chooses as the killed one did.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence


class ModelBandit:
    def __init__(self, roles: Mapping[str, Sequence[str]], c: float = 1.0):
        self.roles = {r: tuple(ms) for r, ms in roles.items() if len(ms) > 1}
        self.c = c
        self.pulls: dict[tuple[str, str], int] = {}
        self.rewards: dict[tuple[str, str], float] = {}

    def choose(self, rng: random.Random) -> dict[str, str]:
        """A model for every role that has several (roles with one are not listed)."""
        return {role: self._choose(role, models, rng) for role, models in self.roles.items()}

    def _choose(self, role: str, models: tuple[str, ...], rng: random.Random) -> str:
        untried = [m for m in models if self.pulls.get((role, m), 0) == 0]
        if untried:
            return untried[0]
        total = sum(self.pulls[(role, m)] for m in models)
        scores = {m: self.rewards.get((role, m), 0.0) / self.pulls[(role, m)]
                  + self.c * math.sqrt(2 * math.log(total) / self.pulls[(role, m)])
                  for m in models}
        best = max(scores.values())
        ties = [m for m in models if scores[m] >= best - 1e-12]
        return ties[0] if len(ties) == 1 else rng.choice(ties)

    def start(self, models: Mapping[str, str]) -> None:
        """A proposal was started with these models: a pull (its reward comes later, so that
        proposals running side by side do not all try the same untried model)."""
        for role, model in models.items():
            if role in self.roles:
                self.pulls[(role, model)] = self.pulls.get((role, model), 0) + 1

    def record(self, models: Mapping[str, str], reward: float) -> None:
        for role, model in models.items():
            if role in self.roles:
                key = (role, model)
                self.rewards[key] = self.rewards.get(key, 0.0) + reward

    def summary(self) -> dict[str, dict[str, tuple[int, float]]]:
        """role -> model -> (proposals, mean reward)."""
        out: dict[str, dict[str, tuple[int, float]]] = {}
        for role, models in self.roles.items():
            out[role] = {m: (self.pulls.get((role, m), 0), self.rewards.get((role, m), 0.0)
                             / max(1, self.pulls.get((role, m), 0))) for m in models}
        return out
