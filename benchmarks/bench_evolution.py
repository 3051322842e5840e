"""Evolution against best-of-N at equal budget, on real searches.

For each run seed r the same search config runs twice: as configured (parents drawn from the
archive: evolution) and with `--ablation best-of-n` (every parent is a seed program, so every
candidate is one move from it). Both arms get the same `max_candidates` and the same run seed,
so the offline proposer's first draws coincide and the pair shares its luck where it can. Each
run ends with its best candidate (by lower bound) confirmed on fresh seeds that selection never
saw; that fresh score, against the run's baseline, is the run's outcome. The two arms are then
compared over the run seeds with a paired t-interval: the question is which strategy's best is
better, not whether either beats the baseline.

Every run points at one shared store (`OUT/store.sqlite`), so the baseline's runs, and any
program both arms propose, are trained once. A killed benchmark resumes: finished runs are
read back, an unfinished one continues with `linarch search --resume`.

    python benchmarks/bench_evolution.py examples/search/evolution_vs_best_of_n.toml \
        --out runs/evo --repeats 3
    python benchmarks/bench_evolution.py CONFIG --out runs/evo --repeats 3 --analyze-only
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from linarch.evaluation.stats import Verdict, paired_comparison
from linarch.search.config import dumps_toml
from linarch.search.jsonl import read_jsonl

ARMS = ("evolution", "best-of-n")


@dataclass(frozen=True)
class RunOutcome:
    """What one search run found: its confirmed best, scored on fresh seeds."""

    arm: str
    run_seed: int
    best: str
    depth: int  # moves from a seed program (1: a child of a seed)
    selection_score: float
    fresh_score: float  # mean of (candidate - baseline) on the fresh seeds, positive = better
    fresh_seeds: int
    candidates: int
    wall_s: float


def derived_config(config: Path, run_seed: int, store: Path) -> str:
    """The config with its run seed and a shared store; relative program paths made absolute
    (the derived file lives in the benchmark's folder, not beside the original)."""
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    run = data.setdefault("run", {})
    run["seed"] = run_seed
    run["store"] = str(store.resolve())

    def absolute(spec: str) -> str:
        return spec if spec.startswith("example:") or Path(spec).is_absolute() else \
            str((config.parent / spec).resolve())

    if "seed_programs" in run:
        run["seed_programs"] = [absolute(s) for s in run["seed_programs"]]
    if "baseline" in run:
        run["baseline"] = absolute(run["baseline"])
    return dumps_toml(data)


def events(run_dir: Path) -> list[dict]:
    """The run's journal, as the search reads it (a line torn by a kill is left out)."""
    return read_jsonl(run_dir / "journal.jsonl")


def finished(run_dir: Path) -> bool:
    return any(e["event"] == "confirmed" for e in events(run_dir))


def run_search(config_file: Path, run_dir: Path, arm: str) -> None:
    if finished(run_dir):
        return
    if run_dir.exists():
        command = ["--resume", str(run_dir)]
    else:
        command = [str(config_file), "--out", str(run_dir)]
        if arm == "best-of-n":
            command += ["--ablation", "best-of-n"]
    subprocess.run([sys.executable, "-m", "linarch", "search", *command], check=True)


def outcome(run_dir: Path, arm: str, run_seed: int) -> RunOutcome:
    log = events(run_dir)
    parents = {e["id"]: e.get("parents", []) for e in log if e["event"] == "proposed"}
    origins = {e["id"]: e.get("origin") for e in log if e["event"] == "proposed"}

    def depth(cid: str) -> int:
        steps = 0
        while origins.get(cid) != "seed" and parents.get(cid):
            cid, steps = parents[cid][0], steps + 1
        return steps

    confirmed = next(e for e in log if e["event"] == "confirmed")
    if not confirmed["verdicts"]:
        raise SystemExit(f"{run_dir}: no finalist was confirmed ({confirmed.get('note', '')})")
    verdict = confirmed["verdicts"][0]
    result = verdict["result"]  # its score is signed: positive = better, whatever the metric
    scores = {e["id"]: e["result"]["score"] for e in log
              if e["event"] == "stage_done" and e.get("outcome") == "ok"}
    times = [e["t"] for e in log if "t" in e]
    return RunOutcome(
        arm=arm, run_seed=run_seed, best=verdict["id"], depth=depth(verdict["id"]),
        selection_score=scores.get(verdict["id"], float("nan")),
        fresh_score=result["score"], fresh_seeds=len(result["candidate_per_seed"]),
        candidates=sum(1 for e in log if e["event"] == "evaluated" and
                       not e["id"].startswith("s")),
        wall_s=max(times) - min(times) if times else 0.0)


def table(outcomes: list[RunOutcome]) -> str:
    lines = ["| arm | run seed | best | moves from the seed | selection score | fresh score "
             "(seeds) | candidates | wall min |", "|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o.arm} | {o.run_seed} | {o.best} | {o.depth} | "
                     f"{o.selection_score:+.4f} | {o.fresh_score:+.4f} ({o.fresh_seeds}) | "
                     f"{o.candidates} | {o.wall_s / 60:.1f} |")
    return "\n".join(lines)


def decide(outcomes: list[RunOutcome]) -> str:
    by = {(o.arm, o.run_seed): o for o in outcomes}
    seeds = sorted({o.run_seed for o in outcomes
                    if all((arm, o.run_seed) in by for arm in ARMS)})
    evolution = [by[("evolution", r)].fresh_score for r in seeds]
    best_of_n = [by[("best-of-n", r)].fresh_score for r in seeds]
    if len(seeds) < 2:
        return f"{len(seeds)} complete pair(s): at least 2 are needed for an interval"
    c = paired_comparison("fresh score of the run's best", True, evolution, best_of_n)
    word = {Verdict.BETTER: "evolution BETTER", Verdict.WORSE: "best-of-N BETTER"}.get(
        c.verdict, "not shown different")
    return (f"evolution {fmean(evolution):+.4f}, best-of-N {fmean(best_of_n):+.4f} "
            f"(fresh score of each run's best, mean over {len(seeds)} run seeds); "
            f"evolution - best-of-N {c.mean_difference:+.4f} "
            f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}] (95%, paired by run seed): {word}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3, help="run seeds 1..REPEATS")
    parser.add_argument("--analyze-only", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for run_seed in range(1, args.repeats + 1):
        config_file = args.out / f"config-seed{run_seed}.toml"
        config_file.write_text(derived_config(args.config, run_seed, args.out / "store.sqlite"),
                               encoding="utf-8")
        for arm in ARMS:
            run_dir = args.out / f"{arm}-seed{run_seed}"
            if not args.analyze_only:
                run_search(config_file, run_dir, arm)
            if finished(run_dir):
                outcomes.append(outcome(run_dir, arm, run_seed))
                print(table(outcomes[-1:]).splitlines()[-1], flush=True)
    print(table(outcomes))
    print(decide(outcomes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
