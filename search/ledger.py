"""Token and cost accounting for LLM calls, with a hard budget in US dollars.

Users of OpenEvolve ask for cost tracking; ShinkaEvolve users rely on its USD cap. The ledger
is the single place that knows what has been spent: it refuses a call once the budget is used
up (BudgetExhausted, which the loop turns into a clean stop) and it is rebuilt from the
transcript on resume, so a resumed run cannot spend its budget twice.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class LLMError(RuntimeError):
    """Base class of the errors the LLM layer raises on purpose."""


class BudgetExhausted(LLMError):
    """The spend reached the budget; no further call is made."""


@dataclass(frozen=True)
class Price:
    """US dollars per 1000 tokens."""

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return input_tokens / 1000 * self.input_per_1k + output_tokens / 1000 * self.output_per_1k


@dataclass(frozen=True)
class Spend:
    calls: int
    input_tokens: int
    output_tokens: int
    usd: float


class CostLedger:
    """Running totals per model and per role; thread-safe."""

    def __init__(self, prices: Mapping[str, Price], budget_usd: float | None = None):
        self.prices = dict(prices)
        self.budget_usd = budget_usd
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])

    def price(self, model: str) -> Price:
        return self.prices.get(model, Price())

    def ensure_available(self) -> None:
        """Raise BudgetExhausted if no budget is left for another call."""
        if self.budget_usd is None:
            return
        spent = self.total().usd
        if spent >= self.budget_usd:
            raise BudgetExhausted(
                f"LLM budget exhausted: spent ${spent:.4f} of ${self.budget_usd:.4f}"
            )

    def record(self, model: str, role: str, input_tokens: int, output_tokens: int) -> float:
        cost = self.price(model).cost(input_tokens, output_tokens)
        self._add(model, role, input_tokens, output_tokens, cost)
        return cost

    def _add(self, model: str, role: str, inp: int, out: int, cost: float) -> None:
        with self._lock:
            row = self._by_key[(model, role)]
            row[0] += 1
            row[1] += inp
            row[2] += out
            row[3] += cost

    def total(self) -> Spend:
        with self._lock:
            rows = list(self._by_key.values())
        return Spend(
            calls=int(sum(r[0] for r in rows)),
            input_tokens=int(sum(r[1] for r in rows)),
            output_tokens=int(sum(r[2] for r in rows)),
            usd=float(sum(r[3] for r in rows)),
        )

    def by_role(self) -> dict[str, Spend]:
        return self._group(1)

    def by_model(self) -> dict[str, Spend]:
        return self._group(0)

    def _group(self, index: int) -> dict[str, Spend]:
        with self._lock:
            items = list(self._by_key.items())
        out: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
        for key, row in items:
            acc = out[key[index]]
            for i in range(4):
                acc[i] += row[i]
        return {k: Spend(int(v[0]), int(v[1]), int(v[2]), float(v[3])) for k, v in out.items()}

    def restore(self, transcript: Iterable[Mapping[str, Any]]) -> None:
        """Add the calls already paid for in an earlier process (transcript "response" lines)."""
        for rec in transcript:
            if rec.get("event") != "response":
                continue
            self._add(
                str(rec["model"]),
                str(rec["role"]),
                int(rec.get("input_tokens", 0)),
                int(rec.get("output_tokens", 0)),
                float(rec.get("cost_usd", 0.0)),
            )
