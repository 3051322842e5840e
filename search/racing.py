"""Racing and the final confirmation: who gets more seeds, and who may be called BETTER.

Every candidate gets a cheap first look (the run's seeds). The best of many noisy first looks
is mostly luck: its score is inflated by selection (docs/search.md measures how much). So:

- **Racing.** A candidate whose 95% interval still reaches the leader's lower bound is in the
  race; it gets `step` more seeds, from one pool in one order (run.seeds, then racing.seeds),
  until its interval falls below the leader's bound or it has `max_seeds`. The leader itself
  is in the race (its own upper bound reaches its lower bound), so the candidates that could
  be best get the seeds, and the rest keep their first look. Every candidate draws the same
  seeds in the same order, so DeltaNet's run on each seed is trained once for the whole
  search (the evaluation's run cache) and a candidate's earlier seeds are read back, not
  trained again.
- **Confirmation.** At the end, the `top` candidates by the archive's ranking (lower bound
  first) are evaluated again on seeds never used for selection. Each gets a one-sided paired
  t-test of "better than DeltaNet"; Holm's step-down correction over the `top` tests keeps the
  chance of any false BETTER at `alpha`. Selection saw none of these seeds, so the finalists'
  fresh scores are unbiased, and the correction covers the tests actually made.

Only `confirm` may say BETTER; a candidate that led the selection is "promising" at most.
Everything here is a pure function of candidates and results, shared by the loop and by the
simulation (tests/linarch_testing/selection_sim.py).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from linarch.evaluation.stats import Alternative, t_quantile, t_test_p
from linarch.search.archive import standard_error
from linarch.search.records import Candidate, EvalResult


class Verdict(enum.StrEnum):
    """What the final stage concludes about one finalist."""

    BETTER = "better"  # Holm rejects "not better than DeltaNet", and the mean reaches min_effect
    NOT_SHOWN = "not shown"  # the fresh seeds do not show it better at the corrected level
    FAILED = "failed"  # the confirmation's evaluation itself failed


def bounds(result: EvalResult, z: float | None) -> tuple[float, float]:
    """The racing interval: mean -+ z standard errors, or the result's own 95% t interval
    when z is None. Unknown (one seed): (-inf, inf), which overlaps everything."""
    if z is None:
        low = result.ci_low if math.isfinite(result.ci_low) else -math.inf
        high = result.ci_high if math.isfinite(result.ci_high) else math.inf
        return low, high
    se = standard_error(result)
    if se is None:
        return -math.inf, math.inf
    return result.score - z * se, result.score + z * se


def leader(candidates: Iterable[Candidate]) -> Candidate | None:
    """The candidate the archive ranks first (furthest stage, then lower bound, then mean)."""
    scored = [c for c in candidates if c.result is not None]
    return max(scored, key=lambda c: c.rank_key, default=None)


def next_seeds(seeds: Sequence[int], pool: Sequence[int], step: int,
               max_seeds: int) -> tuple[int, ...] | None:
    """`seeds` and the next `step` pool seeds it lacks (at most `max_seeds` in all), or None
    when there is nothing left to add."""
    room = min(step, max_seeds - len(seeds))
    extra = [s for s in pool if s not in set(seeds)][: max(0, room)]
    return (*seeds, *extra) if extra else None


def contenders(candidates: Iterable[Candidate], pool: Sequence[int], *, step: int,
               max_seeds: int, exclude: Collection[str] = (), z: float | None = None
               ) -> list[tuple[Candidate, tuple[int, ...]]]:
    """The candidates still in the race, best first, with the seeds each is to be trained on
    next. In the race: scored, at the leader's cascade stage, interval reaching the leader's
    lower bound, seeds left to add (a result that names no seeds is not raced). `exclude`: the
    baseline (its interval is [0, 0]) and candidates whose racing is running or stopped. `z`:
    the intervals compared are mean -+ z standard errors (None: the 95% t intervals, which
    with 3 seeds are +-4.3 standard errors wide and keep nearly everyone in the race)."""
    pool_list = list(candidates)
    top = leader(pool_list)
    if top is None:
        return []
    assert top.result is not None
    bar = bounds(top.result, z)[0]
    out = []
    for c in sorted(pool_list, key=lambda c: c.rank_key, reverse=True):
        r = c.result
        if r is None or not r.seeds or c.id in exclude or c.stages_passed != top.stages_passed:
            continue  # a result without seeds (a cost model, a gate) has nothing to race
        if bounds(r, z)[1] < bar:
            continue
        seeds = next_seeds(r.seeds, pool, step, max_seeds)
        if seeds is not None:
            out.append((c, seeds))
    return out


def finalists(candidates: Iterable[Candidate], top: int,
              exclude: Collection[str] = ()) -> list[Candidate]:
    """The `top` scored candidates by the archive's ranking (seed programs excluded)."""
    scored = [c for c in candidates if c.result is not None and c.id not in exclude]
    return sorted(scored, key=lambda c: (tuple(-x for x in c.rank_key), c.id))[:top]


def reused_seeds(fresh: Iterable[int], used: Iterable[int]) -> list[int]:
    """Confirmation seeds that selection already used (must be empty)."""
    return sorted(set(fresh) & set(used))


def one_sided_p(result: EvalResult) -> float:
    """P-value of "the candidate is not better than DeltaNet", from the paired t interval a
    result carries (mean and 95% half-width over n seeds): 1 - T_{n-1}(mean / SE)."""
    n = len(result.seeds)
    if n < 2 or not math.isfinite(result.ci_low):
        return 1.0
    se = (result.score - result.ci_low) / t_quantile(0.975, n - 1)
    return t_test_p(result.score, se, n - 1, Alternative.GREATER)


def holm(pvalues: Mapping[str, float], alpha: float) -> dict[str, tuple[float, bool]]:
    """Holm's step-down procedure: sorted p_(1) <= ... <= p_(m), the i-th (from 0) is compared
    with alpha / (m - i), and rejections stop at the first that fails. Returns each id's
    threshold and whether its null hypothesis is rejected (family-wise error <= alpha)."""
    m = len(pvalues)
    out: dict[str, tuple[float, bool]] = {}
    going = True
    for i, (cid, p) in enumerate(sorted(pvalues.items(), key=lambda kv: (kv[1], kv[0]))):
        threshold = alpha / (m - i)
        going = going and p <= threshold
        out[cid] = (threshold, going)
    return out


# what a run compares against when run.baseline is not set (examples/deltanet.lin); journals
# written before run.baseline existed read as it
DEFAULT_BASELINE_NAME = "DeltaNet"


@dataclass(frozen=True)
class Confirmation:
    """One finalist's verdict on the fresh seeds."""

    id: str
    verdict: Verdict
    result: EvalResult | None
    p_value: float
    threshold: float  # Holm's level for this test
    tests: int  # the size of the family corrected for
    selection_score: float  # its score on the selection seeds, for the inflation
    baseline: str = DEFAULT_BASELINE_NAME  # the name of the run's baseline (run.baseline)

    def to_dict(self) -> dict:
        return {"id": self.id, "verdict": self.verdict.value, "p_value": self.p_value,
                "threshold": self.threshold, "tests": self.tests,
                "selection_score": self.selection_score, "baseline": self.baseline,
                "result": None if self.result is None else self.result.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping) -> Confirmation:
        result = data.get("result")
        return cls(str(data["id"]), Verdict(data["verdict"]),
                   None if result is None else EvalResult.from_dict(result),
                   float(data["p_value"]), float(data["threshold"]), int(data["tests"]),
                   float(data["selection_score"]),
                   str(data.get("baseline", DEFAULT_BASELINE_NAME)))

    def line(self) -> str:
        """What the command line and the report say of it."""
        if self.result is None:
            return f"{self.id}: confirmation failed"
        r = self.result
        word = f"BETTER than {self.baseline}" if self.verdict is Verdict.BETTER \
            else "not shown better"
        return (f"{self.id}: {word} on {len(r.seeds)} fresh seeds: {r.score:+.4f} "
                f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}], p {self.p_value:.4f} vs Holm "
                f"{self.threshold:.4f} ({self.tests} tests); selection score "
                f"{self.selection_score:+.4f}")


def confirm(finalists: Sequence[Candidate], results: Mapping[str, EvalResult | None], *,
            alpha: float, min_effect: float = 0.0, baseline: str = DEFAULT_BASELINE_NAME
            ) -> list[Confirmation]:
    """The verdicts of the final stage: Holm over every finalist (a failed evaluation counts
    as a test with p = 1, so failures cannot shrink the family)."""
    pvalues = {c.id: (one_sided_p(r) if (r := results.get(c.id)) is not None else 1.0)
               for c in finalists}
    levels = holm(pvalues, alpha)
    out = []
    for c in finalists:
        r = results.get(c.id)
        threshold, rejected = levels[c.id]
        if r is None:
            verdict = Verdict.FAILED
        elif rejected and r.score >= min_effect:
            verdict = Verdict.BETTER
        else:
            verdict = Verdict.NOT_SHOWN
        out.append(Confirmation(c.id, verdict, r, pvalues[c.id], threshold, len(finalists),
                                c.score, baseline))
    return out


def selection_label(result: EvalResult | None) -> str:
    """What the selection stages may call a result: never BETTER (that is the confirmation's
    word), "promising" when its interval lies above DeltaNet's score."""
    if result is None:
        return "failed"
    return "promising" if math.isfinite(result.ci_low) and result.ci_low > 0 else ""
