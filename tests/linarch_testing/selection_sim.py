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
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass

from linarch.search.archive import Archive
from linarch.search.records import Candidate, EvalResult, Profile

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


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


@dataclass(frozen=True)
class Outcome:
    parent_true: float  # mean true score of the parents chosen
    best_true: float  # true score of the candidate the archive ranks best at the end
    inflation: float  # the best's reported score minus its true score


def _observe(true: float, rng: random.Random, s: Setting) -> EvalResult:
    draws = [true + rng.gauss(0.0, s.noise_sd) for _ in range(s.seeds)]
    mean = statistics.fmean(draws)
    half = T_975[s.seeds - 1] * statistics.stdev(draws) / math.sqrt(s.seeds)
    return EvalResult(mean, mean - half, mean + half, "sim", seeds=tuple(range(s.seeds)))


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
    best = archive.best()
    assert best is not None
    return Outcome(statistics.fmean(chosen), true[best.id], best.score - true[best.id])


def compare(rules: tuple[str, ...], repeats: int, s: Setting = Setting()
            ) -> dict[str, list[Outcome]]:
    return {rule: [simulate(rule, r, s) for r in range(repeats)] for rule in rules}


def paired_interval(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean of a - b and its 95% interval (normal approximation over repeats)."""
    diffs = [x - y for x, y in zip(a, b)]
    mean = statistics.fmean(diffs)
    half = 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half
