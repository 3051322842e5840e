"""Typed results of training runs: how a run ended, what it measured, how long it took."""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field


class Outcome(enum.StrEnum):
    """How a training run, or a worker process that runs jobs, ended: one type for the trainer
    and the search's sandboxed workers. A failed candidate run counts as a loss in a
    comparison; a failed baseline run is trained again (compare.py)."""

    OK = "ok"
    NAN = "nan"              # a loss or gradient norm was not finite
    DIVERGED = "diverged"    # the smoothed loss rose past the divergence limit
    TIMEOUT = "timeout"      # the time limit stopped it (a run's metrics are of the partial model)
    OOM = "oom"              # out of device memory, or past the memory limit
    CRASH = "crash"          # a worker process died without answering (a signal, os._exit)
    ERROR = "error"          # any other exception (its message is kept)


@dataclass(frozen=True)
class Metric:
    """The score a task reports, and which direction is better."""

    name: str
    higher_is_better: bool


@dataclass(frozen=True)
class CurvePoint:
    step: int
    value: float


@dataclass(frozen=True)
class Curves:
    """Training loss and learning rate per logged step; evaluation metrics per eval step."""

    train_loss: tuple[CurvePoint, ...] = ()
    learning_rate: tuple[CurvePoint, ...] = ()
    eval: dict[str, tuple[CurvePoint, ...]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "train_loss": [[p.step, p.value] for p in self.train_loss],
            "learning_rate": [[p.step, p.value] for p in self.learning_rate],
            "eval": {k: [[p.step, p.value] for p in v] for k, v in self.eval.items()},
        }

    @staticmethod
    def from_json(data: dict) -> Curves:
        def points(rows):
            return tuple(CurvePoint(int(s), float(v)) for s, v in rows)

        return Curves(
            train_loss=points(data.get("train_loss", [])),
            learning_rate=points(data.get("learning_rate", [])),
            eval={k: points(v) for k, v in data.get("eval", {}).items()},
        )


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds, process CPU seconds (training and evaluation) and throughput."""

    setup_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    tokens_seen: int = 0
    cpu_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_seen / self.train_s if self.train_s > 0 else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "tokens_per_s": self.tokens_per_s}

    @staticmethod
    def from_json(data: dict) -> Timings:
        return Timings(**{k: data[k] for k in ("setup_s", "train_s", "eval_s", "tokens_seen",
                                                 "cpu_s") if k in data})


@dataclass(frozen=True)
class TrainResult:
    """One model trained on one problem with one seed."""

    outcome: Outcome
    metrics: dict[str, float]
    curves: Curves
    timings: Timings
    steps: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def metric(self, name: str) -> float:
        return self.metrics.get(name, math.nan)
