"""A simulated search, to compare parent-selection rules on the real Archive.

Candidates have a true score (paired difference to DeltaNet) that the search never sees; it
sees a noisy evaluation: `seeds` paired differences, each the true score plus Gaussian noise
of the measured seed-to-seed spread (SD 0.28 on the MQAR proxy, issue 12), summarised as a
mean with a t interval. A child's true score is its parent's plus an edit effect drawn from
N(mean_edit, sd_edit): most edits hurt a little, some help. Its MAP-Elites cell is its
parent's, or with probability `new_cell` one of `cells` others. The run starts from two
seeds, DeltaNet (true 0) and linear attention (true -0.5, the worst seed of the issue's real
run). Random streams are drawn per (repeat, step), so two rules compared on one repeat see
the same noise and the same edit effects at each step (common random numbers).

With `racing`, after every child the real racing rule (linarch.search.racing.contenders) gives
more seeds to every candidate whose interval reaches the leader's lower bound, until none
does; a candidate's extra seeds come from its own stream, so the first looks are the same
draws as without racing. At the end the real confirmation (racing.confirm: the top
`confirm_top` on `confirm_seeds` fresh draws, Holm at `alpha`) says which are BETTER.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass

from linarch.evaluation.stats import t_quantile
from linarch.search.archive import Archive
from linarch.search.racing import Verdict, confirm, contenders, finalists
from linarch.search.records import Candidate, EvalResult, Profile


@dataclass(frozen=True)
class Setting:
    steps: int = 40
    seeds: int = 3
    noise_sd: float = 0.28
    mean_edit: float = -0.05
    sd_edit: float = 0.15
    new_cell: float = 0.3
    cells: int = 4
    islands: int = 2
    racing: bool = False
    step: int = 2  # racing: seeds added per round
    max_seeds: int = 8
    z: float | None = 1.0  # racing intervals: mean -+ z SE (None: the 95% t intervals)
    confirm_top: int = 3
    confirm_seeds: int = 5
    alpha: float = 0.05


@dataclass(frozen=True)
class Outcome:
    parent_true: float  # mean true score of the parents chosen
    best_true: float  # true score of the candidate the archive ranks best at the end
    inflation: float  # the best's reported score minus its true score
    seeds: float = 0.0  # evaluations (seeds) per candidate, racing included
    best_seeds: int = 0  # seeds behind the best's reported score
    confirmed_inflation: float = 0.0  # the top finalist's fresh score minus its true score
    false_better: bool = False  # the confirmation called a candidate of true score <= 0 BETTER
    true_better: bool = False  # it called at least one of true score > 0 BETTER
    naive_false_better: bool = False  # the best's selection interval above 0, true <= 0
    uncorrected_false_better: bool = False  # fresh seeds, p <= alpha without Holm, true <= 0


def _observe(true: float, rng: random.Random, s: Setting) -> EvalResult:
    return _summary([true + rng.gauss(0.0, s.noise_sd) for _ in range(s.seeds)])


def _summary(draws: list[float], first_seed: int = 0) -> EvalResult:
    n = len(draws)
    mean = statistics.fmean(draws)
    half = t_quantile(0.975, n - 1) * statistics.stdev(draws) / math.sqrt(n)
    return EvalResult(mean, mean - half, mean + half, "sim",
                      seeds=tuple(range(first_seed, first_seed + n)),
                      candidate_per_seed=tuple(draws))


def _race(archive: Archive, true: dict[str, float], repeat: int, s: Setting) -> None:
    """More seeds for every candidate in the race, until none is (racing.contenders)."""
    pool = tuple(range(s.max_seeds))
    while True:
        raced = contenders(archive.candidates.values(), pool, step=s.step,
                           max_seeds=s.max_seeds, z=s.z)
        if not raced:
            return
        for c, seeds in raced:
            assert c.result is not None
            draws = list(c.result.candidate_per_seed)
            extra = random.Random(f"{repeat}:{c.id}:racing:{len(draws)}")
            draws += [true[c.id] + extra.gauss(0.0, s.noise_sd)
                      for _ in range(len(seeds) - len(draws))]
            archive.rescore(c.id, _summary(draws))


def _confirm(archive: Archive, true: dict[str, float], repeat: int, s: Setting) -> dict:
    finals = finalists(archive.candidates.values(), s.confirm_top, exclude=archive.seeds)
    fresh = {}
    for c in finals:
        rng = random.Random(f"{repeat}:{c.id}:confirm")
        fresh[c.id] = _summary([true[c.id] + rng.gauss(0.0, s.noise_sd)
                                for _ in range(s.confirm_seeds)], first_seed=1000)
    verdicts = confirm(finals, fresh, alpha=s.alpha)
    called = [v for v in verdicts if v.verdict is Verdict.BETTER]
    return {
        "confirmed_inflation": fresh[finals[0].id].score - true[finals[0].id] if finals else 0.0,
        "false_better": any(true[v.id] <= 0 for v in called),
        "true_better": any(true[v.id] > 0 for v in called),
        "uncorrected_false_better": any(v.p_value <= s.alpha and true[v.id] <= 0
                                        for v in verdicts),
    }


def _candidate(cid: str, cell: int, result: EvalResult, island: int, parent: str | None,
               origin: str) -> Candidate:
    profile = Profile(cid, cid, 1000, 1000, (f"class{cell}",), 1)
    return Candidate(cid, "", "", () if parent is None else (parent,), island, 1, origin,
                     profile, result, 1)


def simulate(selection: str, repeat: int, s: Setting = Setting()) -> Outcome:
    archive = Archive(s.islands, selection=selection)
    true: dict[str, float] = {}
    cells: dict[str, int] = {}
    for cid, value, cell in (("s000", 0.0, 0), ("s001", -0.5, 1)):
        rng = random.Random(f"{repeat}:seed:{cid}")
        true[cid], cells[cid] = value, cell
        archive.add(_candidate(cid, cell, _observe(value, rng, s), -1, None, "seed"), seed=True)
    chosen = []
    for step in range(1, s.steps + 1):
        pick = random.Random(f"{selection}:{repeat}:{step}")  # the rule's own draws
        world = random.Random(f"{repeat}:{step}")  # what the evaluation and the edit do
        island = (step - 1) % s.islands
        parent = archive.sample_parent(island, pick)
        archive.note_child(parent.id)
        chosen.append(true[parent.id])
        cid = f"c{step:04d}"
        true[cid] = true[parent.id] + world.gauss(s.mean_edit, s.sd_edit)
        new = world.random() < s.new_cell
        cells[cid] = world.randrange(s.cells) if new else cells[parent.id]
        child = _candidate(cid, cells[cid], _observe(true[cid], world, s), island, parent.id,
                           "mutation")
        archive.add(child)
        archive.credit(parent.id, child)
        if s.racing:
            _race(archive, true, repeat, s)
    best = archive.best()
    assert best is not None and best.result is not None
    seeds = statistics.fmean(len(c.result.seeds) for c in archive.candidates.values()
                             if c.result is not None)
    naive = best.result.ci_low > 0 and true[best.id] <= 0
    return Outcome(statistics.fmean(chosen), true[best.id], best.score - true[best.id],
                   seeds, len(best.result.seeds), naive_false_better=naive,
                   **_confirm(archive, true, repeat, s))


def compare(rules: tuple[str, ...], repeats: int, s: Setting = Setting()
            ) -> dict[str, list[Outcome]]:
    return {rule: [simulate(rule, r, s) for r in range(repeats)] for rule in rules}


def compare_settings(settings: dict[str, Setting], rule: str, repeats: int
                     ) -> dict[str, list[Outcome]]:
    """One rule under several settings (racing off and on), paired by repeat."""
    return {name: [simulate(rule, r, s) for r in range(repeats)]
            for name, s in settings.items()}


def proportion(flags: list[bool]) -> tuple[float, float, float]:
    """A rate and its 95% Wilson interval."""
    n, k = len(flags), sum(flags)
    p = k / n
    z = 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def paired_interval(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean of a - b and its 95% interval (normal approximation over repeats)."""
    diffs = [x - y for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    half = 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half
