"""The typed records the search passes around: profiles, evaluation jobs and results, candidates.

Everything here is a frozen dataclass that turns into JSON and back, because every record ends
up in the run journal and must survive a `kill -9` and a resume unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from linarch.search import wire


class DiagnosticLike(Protocol):
    """What the search reads from a compiler diagnostic (`linarch.check`)."""

    code: str
    severity: str
    message: str

    def to_dict(self) -> dict[str, Any]: ...


class AnalysisLike(Protocol):
    """What the search reads from `linarch.analyze(source)`."""

    name: str
    structural_hash: str
    flops_per_token: int
    state_bytes: int
    transition_classes: tuple[str, ...]
    num_paths: int
    graph: Any  # networkx.DiGraph; node attribute "node" holds an IR node with an `.op`


def hparam_value(value: float) -> int | float:
    """A hyper-parameter as the evaluation sets it: a whole number is an int, a fractional
    width (expand_k 0.53 from parameter matching) stays a float (made an int, it was 0, and the
    candidate's costs and MAP-Elites cell were taken at zero width)."""
    number = float(value)
    return int(number) if number.is_integer() else number


def log2_bucket(value: float) -> int:
    """floor(log2(value)), with 0 for values below 1: the coarse axis of a MAP-Elites grid."""
    return int(math.floor(math.log2(value))) if value >= 1 else 0


@dataclass(frozen=True)
class Descriptor:
    """Where a candidate sits in the MAP-Elites grid of an island."""

    transition: str  # sorted transition classes joined by "+", e.g. "delta" or "delta+diagonal"
    num_paths: int
    state_bucket: int  # floor(log2(state bytes))
    flops_bucket: int  # floor(log2(FLOPs per token))

    @property
    def cell(self) -> tuple[str, int, int, int]:
        return (self.transition, self.num_paths, self.state_bucket, self.flops_bucket)

    def label(self) -> str:
        return (
            f"{self.transition}/p{self.num_paths}/s2^{self.state_bucket}/f2^{self.flops_bucket}"
        )


@dataclass(frozen=True)
class Profile:
    """What the search keeps of a compiler analysis: descriptors, the hash, the WL features,
    and (once the vetting worker has run the program) its behavioural fingerprint.

    `flops_per_token` and `state_bytes` are taken at `shape`, the hyper-parameters the
    evaluation builds the candidate with (hidden size, heads ... after width matching), so
    that the MAP-Elites cells compare candidates as they are trained; an empty `shape` means
    the program's declared defaults (before vetting). The IR graph itself is not kept: its
    Weisfeiler-Lehman feature multiset is enough for near-duplicate detection and it fits in a
    JSON journal line.
    """

    name: str
    structural_hash: str
    flops_per_token: int
    state_bytes: int
    transition_classes: tuple[str, ...]
    num_paths: int
    wl_features: tuple[tuple[str, int], ...] = ()
    shape: tuple[tuple[str, int | float], ...] = ()
    fingerprint: tuple[float, ...] = ()

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(
            transition="+".join(sorted(set(self.transition_classes))) or "none",
            num_paths=self.num_paths,
            state_bucket=log2_bucket(self.state_bytes),
            flops_bucket=log2_bucket(self.flops_per_token),
        )

    def features(self) -> dict[str, int]:
        return dict(self.wl_features)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "wl_features": [list(p) for p in self.wl_features],
                "shape": [list(p) for p in self.shape], "fingerprint": list(self.fingerprint)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        return cls(
            name=str(data["name"]),
            structural_hash=str(data["structural_hash"]),
            flops_per_token=int(data["flops_per_token"]),
            state_bytes=int(data["state_bytes"]),
            transition_classes=tuple(data["transition_classes"]),
            num_paths=int(data["num_paths"]),
            wl_features=tuple((str(k), int(v)) for k, v in data.get("wl_features", ())),
            shape=tuple((str(k), hparam_value(v)) for k, v in data.get("shape", ())),
            fingerprint=tuple(float(v) for v in data.get("fingerprint", ())),
        )


@dataclass(frozen=True)
class EvalJob:
    """One stage of the evaluation cascade for one candidate; `key` is stable across resumes.

    An evaluation store that memoises on `key` makes a resumed run skip work it already did.
    """

    key: str  # "<run>/<candidate>/<stage>"
    candidate_id: str
    source: str
    stage: str
    preset: str
    seeds: tuple[int, ...]
    run_path: str = ""  # the run directory (for caches shared by a run's evaluations)
    # True: train exactly `seeds` (racing, confirmation); False: `seeds` are the first look of
    # the evaluation's own sequential schedule, which may add seeds to a close result
    fixed_seeds: bool = False


@wire.register
@dataclass(frozen=True)
class EvalResult:
    """What an evaluation stage returns: the paired difference to DeltaNet, higher is better."""

    score: float
    ci_low: float
    ci_high: float
    verdict: str  # the evaluation's own call, e.g. "better", "worse", "inconclusive"
    metrics: Mapping[str, float] = field(default_factory=dict)
    seeds: tuple[int, ...] = ()
    detail: str = ""
    # the metric per seed, in `seeds` order, for the candidate and for DeltaNet (what the
    # researcher sees of a parent's spread), and the candidate's evaluation curve per seed
    candidate_per_seed: tuple[float, ...] = ()
    baseline_per_seed: tuple[float, ...] = ()
    curves: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)

    @property
    def lcb(self) -> float:
        """The lower confidence bound the archive ranks by (-inf when the interval is
        unknown, e.g. a single seed: an unmeasured spread is not a small one)."""
        return self.ci_low if math.isfinite(self.ci_low) else -math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "verdict": self.verdict,
            "metrics": dict(self.metrics),
            "seeds": list(self.seeds),
            "detail": self.detail,
            "candidate_per_seed": list(self.candidate_per_seed),
            "baseline_per_seed": list(self.baseline_per_seed),
            "curves": {k: [list(p) for p in v] for k, v in self.curves.items()},
        }

    @classmethod
    def from_comparison(
        cls,
        comparison: Any,
        *,
        metrics: Mapping[str, float] | None = None,
        seeds: Sequence[int] = (),
        detail: str = "",
        candidate_per_seed: Sequence[float] = (),
        baseline_per_seed: Sequence[float] = (),
        curves: Mapping[str, Sequence[tuple[int, float]]] | None = None,
    ) -> EvalResult:
        """From linarch.evaluation's PairedComparison (candidate minus baseline, in the
        metric's units), turned so that a higher score is better for any metric direction:
        a loss that fell by 0.1 scores +0.1."""
        sign = 1.0 if comparison.higher_is_better else -1.0
        low, high = sorted((sign * comparison.ci_low, sign * comparison.ci_high))
        verdict = getattr(comparison.verdict, "value", comparison.verdict)
        return cls(
            score=sign * comparison.mean_difference,
            ci_low=low,
            ci_high=high,
            verdict=str(verdict),
            metrics=dict(metrics or {comparison.metric: sign * comparison.mean_difference}),
            seeds=tuple(seeds),
            detail=detail,
            candidate_per_seed=tuple(float(v) for v in candidate_per_seed),
            baseline_per_seed=tuple(float(v) for v in baseline_per_seed),
            curves={k: tuple((int(a), float(b)) for a, b in v) for k, v in (curves or {}).items()},
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        return cls(
            score=float(data["score"]),
            ci_low=float(data["ci_low"]),
            ci_high=float(data["ci_high"]),
            verdict=str(data["verdict"]),
            metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
            seeds=tuple(int(s) for s in data.get("seeds", ())),
            detail=str(data.get("detail", "")),
            candidate_per_seed=tuple(float(v) for v in data.get("candidate_per_seed", ())),
            baseline_per_seed=tuple(float(v) for v in data.get("baseline_per_seed", ())),
            curves={str(k): tuple((int(a), float(b)) for a, b in v)
                    for k, v in data.get("curves", {}).items()},
        )


# Cascade stages that only gate (pass or fail) and return no score: a candidate that passed
# them and then failed a trained stage has no score at all, not a score of 0.
GATE_STAGES = frozenset({"static", "numerics"})


def is_scored(stage: str) -> bool:
    return stage not in GATE_STAGES


@dataclass(frozen=True)
class Candidate:
    """An evaluated program: its text, lineage, profile, the last score it earned in the
    cascade, and how the cascade ended for it."""

    id: str
    source: str
    motivation: str
    parent_ids: tuple[str, ...]
    island: int
    generation: int
    origin: str  # "seed", "llm", "mutation", ...
    profile: Profile
    result: EvalResult | None  # the last scored stage that returned OK; None: no score
    stages_passed: int  # how many cascade stages returned OK (and, before the last, passed)
    cost_usd: float = 0.0
    analysis: str = ""
    outcome: str = "ok"  # the last stage's executor Outcome value
    failure: str = ""  # "STAGE: OUTCOME: first line of the error" when the cascade failed

    @property
    def score(self) -> float:
        return self.result.score if self.result is not None else float("-inf")

    @property
    def lcb(self) -> float:
        return self.result.lcb if self.result is not None else float("-inf")

    @property
    def rank_key(self) -> tuple[int, float, float]:
        """Candidates that went further in the cascade rank first, then by the lower bound of
        their interval (a lucky mean on a wide interval does not lead), then by the mean."""
        return (self.stages_passed, self.lcb, self.score)

    def brief(self) -> dict[str, Any]:
        """The view a prompt template gets of a candidate."""
        r = self.result
        return {
            "id": self.id,
            "name": self.profile.name,
            "source": self.source,
            "motivation": self.motivation,
            "score": None if r is None else r.score,
            "ci_low": None if r is None else r.ci_low,
            "ci_high": None if r is None else r.ci_high,
            "verdict": "" if r is None else prompt_verdict(r),
            "metrics": {} if r is None else dict(r.metrics),
            "seeds": [] if r is None else list(r.seeds),
            "candidate_per_seed": [] if r is None else list(r.candidate_per_seed),
            "baseline_per_seed": [] if r is None else list(r.baseline_per_seed),
            "curves": {} if r is None else {k: list(v) for k, v in r.curves.items()},
            "descriptor": self.profile.descriptor.label(),
            "shape": dict(self.profile.shape),
            "flops_per_token": self.profile.flops_per_token,
            "state_bytes": self.profile.state_bytes,
            "analysis": self.analysis,
            "outcome": self.outcome,
            "failure": self.failure,
        }


def prompt_verdict(result: EvalResult) -> str:
    """The evaluation's verdict as the proposer and the analyst may read it: a BETTER on the
    selection seeds is only "promising" (the seeds chose it, so its score is inflated; only the
    confirmation on fresh seeds may say BETTER), the other verdicts as they are."""
    if result.verdict == "better":
        return "promising (better on the selection seeds, not confirmed)"
    return result.verdict
