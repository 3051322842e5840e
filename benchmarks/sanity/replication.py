"""The replication table: several `linarch train` runs against one baseline, corrected together.

Each run directory is one program on one axis (MQAR recall, LM loss ...), scored by `compare`
with its own sequential seeds. Read one at a time, each verdict holds at its own level; read
together (five programs on two axes are ten tests) the chance that one of them says BETTER by
luck grows with the number of tests. This script reads the runs' per-seed scores back and
decides them as one family: a two-sided paired t-test per run, Holm's step-down correction at
`--alpha` over all of them, and intervals at the Bonferroni level 1 - alpha / m (simultaneous:
all m cover their true differences together with probability >= 1 - alpha). Differences are
signed so that positive means the candidate is better, whatever the metric's direction.

    python benchmarks/sanity/replication.py runs/rep/*-mqar runs/rep/*-lm
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from linarch.evaluation.stats import (
    Alternative,
    PairedComparison,
    level,
    paired_comparison,
)
from linarch.search.racing import holm


@dataclass(frozen=True)
class Row:
    run: str
    candidate: str
    baseline: str
    task: str
    metric: str
    params: tuple[int, int]  # candidate, baseline (non-embedding)
    state: tuple[int, int]
    candidate_mean: float
    baseline_mean: float
    diffs: tuple[float, ...]  # candidate - baseline, positive = better

    def comparison(self, confidence: float = 0.95) -> PairedComparison:
        """The signed differences against zero, as `compare` computes its interval."""
        zeros = [0.0] * len(self.diffs)
        return paired_comparison(self.metric, True, list(self.diffs), zeros, confidence)

    @property
    def p_value(self) -> float:
        """Two-sided paired t-test of "no difference" (1 when fewer than two pairs)."""
        return self.comparison().p_value(Alternative.TWO_SIDED)

    def interval(self, confidence: float) -> tuple[float, float]:
        """The paired t-interval at `confidence`."""
        s = self.comparison(confidence)
        return s.ci_low, s.ci_high


def read_run(path: Path) -> Row:
    data = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    sign = 1.0 if data["higher_is_better"] else -1.0
    values: dict[tuple[str, int], float] = {}
    for s in data["scores"]:
        values[(s["role"], int(s["seed"]))] = float(s["value"])
    seeds = [int(s) for s in data["seeds"]]
    cand = [values[("candidate", s)] for s in seeds]
    base = [values[("baseline", s)] for s in seeds]
    first = next(iter(data["matching"].values()))  # the first problem's matching
    return Row(path.name, data["mixers"]["candidate"]["name"], data["mixers"]["baseline"]["name"],
               data["task"], data["metric"],
               (_get(first, "candidate", "params_non_embedding"),
                _get(first, "baseline", "params_non_embedding")),
               (_get(first, "candidate", "state_bytes"), _get(first, "baseline", "state_bytes")),
               fmean(cand), fmean(base), tuple(sign * (c - b) for c, b in zip(cand, base)))


def _get(match: dict, role: str, key: str) -> int:
    arm = match.get(role, {})
    return int(arm.get(key, 0) or 0)


def table(rows: list[Row], alpha: float) -> str:
    m = len(rows)
    confidence = 1.0 - alpha / m
    decided = holm({r.run: r.p_value for r in rows}, alpha)
    lines = [f"Family of {m} tests, Holm at {alpha:g}; intervals at {level(confidence)} "
             f"(Bonferroni, 1 - {alpha:g}/{m}); positive = the candidate is better.", "",
             "| program | task | metric | candidate | baseline | difference "
             f"({level(confidence)} CI) | seeds | p (two-sided) | Holm level | verdict | "
             "params cand / base | state bytes cand / base |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        low, high = r.interval(confidence)
        threshold, rejected = decided[r.run]
        mean = fmean(r.diffs)
        verdict = ("BETTER" if mean > 0 else "WORSE") if rejected else "not shown"
        lines.append(
            f"| {r.candidate} | {r.task} | {r.metric} | {r.candidate_mean:.4f} | "
            f"{r.baseline_mean:.4f} | {mean:+.4f} [{low:+.4f}, {high:+.4f}] | {len(r.diffs)} | "
            f"{r.p_value:.4f} | {threshold:.4f} | {verdict} | {r.params[0]:,} / {r.params[1]:,} "
            f"| {r.state[0]:,} / {r.state[1]:,} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="`linarch train --out` directories")
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args(argv)
    rows = [read_run(p) for p in args.runs if (p / "metrics.json").is_file()]
    if not rows:
        parser.error("no run directory with a metrics.json among the arguments")
    print(table(rows, args.alpha))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
