"""Finished training runs, kept in the experiment store under a key of everything they depend on.

A comparison asks the cache before it trains: DeltaNet's seeds are trained once per budget and
reused by every candidate (the baseline cache), and a comparison that is asked again with more
seeds (sequential seeds, a racing search) trains only the seeds it has not seen. The key covers
the mixer (structure and generated code), the whole budget definition (`Budget.key`), the
problem, the seed, the learning-rate point, the model shape and the device type; a change to any
of them misses. Outcomes that depend on the machine rather than the run (TIMEOUT, OOM) are
never kept, so they are retried next time.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import closing
from dataclasses import asdict, dataclass

from .mixers import MixerSpec
from .problems import ModelShape, shape_json
from .results import Curves, Outcome, Timings, TrainResult
from .store import ExperimentStore

TRANSIENT = frozenset({Outcome.TIMEOUT, Outcome.OOM})


@dataclass(frozen=True)
class RunKey:
    """What identifies one run; `digest` is its cache key."""

    mixer: str       # structural hash : code hash
    budget: str      # Budget.key
    problem: str
    seed: int
    hyper: tuple[float, float | None]  # (lr, weight decay)
    shape: str       # canonical JSON of the shape
    device: str      # "cpu" or "cuda": kernels differ, and so do the numbers

    @staticmethod
    def of(mixer: MixerSpec, budget_key: str, problem: str, seed: int, lr: float,
           weight_decay: float | None, shape: ModelShape, device: str) -> RunKey:
        salt = f":salt{mixer.init_salt}" if mixer.init_salt else ""
        return RunKey(f"{mixer.structural_hash}:{mixer.code_hash}{salt}", budget_key, problem, seed,
                      (lr, weight_decay), json.dumps(shape_json(shape), sort_keys=True,
                                                      default=str), device)

    @property
    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def result_json(result: TrainResult) -> dict:
    return {"outcome": result.outcome.value, "metrics": result.metrics,
            "curves": result.curves.to_json(), "timings": result.timings.to_json(),
            "steps": result.steps, "error": result.error}


def result_from_json(data: dict) -> TrainResult:
    return TrainResult(Outcome(data["outcome"]), {k: float(v) for k, v in data["metrics"].items()},
                       Curves.from_json(data["curves"]), Timings.from_json(data["timings"]),
                       int(data["steps"]), str(data.get("error", "")))


class RunCache:
    """Typed access to the store's `run_cache` table (shared by processes, like the store)."""

    def __init__(self, store: ExperimentStore) -> None:
        self.store = store

    def get(self, key: RunKey) -> TrainResult | None:
        with closing(self.store.connect()) as conn:
            row = conn.execute("SELECT result FROM run_cache WHERE key = ?",
                               (key.digest,)).fetchone()
        return None if row is None else result_from_json(json.loads(row[0]))

    def put(self, key: RunKey, result: TrainResult) -> bool:
        """Keep `result` unless its outcome is transient; True when it was kept."""
        if result.outcome in TRANSIENT:
            return False
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO run_cache (key, mixer, budget_key, problem, seed, outcome, "
                "result) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key.digest, key.mixer, key.budget, key.problem, key.seed, result.outcome.value,
                 json.dumps(result_json(result), sort_keys=True)))
        return True

    def count(self, budget_key: str | None = None) -> int:
        where, args = ("WHERE budget_key = ?", (budget_key,)) if budget_key else ("", ())
        with closing(self.store.connect()) as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM run_cache {where}", args).fetchone()[0])

