"""A run directory: everything needed to read, rerun and audit one experiment.

    config.json        task, preset, budget key, problems, training configs, seeds, matching
    candidate.lin      the candidate's DSL source (baseline.lin likewise)
    compiled/          the generated code of each mixer
    seeds.json         the seeds compared, and those left out
    environment.json   package versions, device, threads
    metrics.json       every run (cached or trained), the per-seed scores, every look, the cost
    curves/            loss and metric curves, as JSON and PNG
    checkpoints/       trained models, when asked for (role/seed/problem)
    report.txt         the summary the CLI printed
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from .compare import Comparison
from .environment import capture_environment
from .mixers import MixerSpec, compiled_code
from .plots import plot_curves
from .problems import shape_json
from .results import Curves


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class RunDirectory:
    """Writer for one experiment's directory (created if missing; files are overwritten)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def write_json(self, name: str, data) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n")
        return path

    def write_text(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def write_mixer(self, role: str, spec: MixerSpec) -> None:
        self.write_text(f"{role}.lin", spec.source)
        code = compiled_code(spec.layer_cls)
        if code:
            self.write_text(f"compiled/{role}.py", code)

    def checkpoint_dir(self, role: str, seed: int, problem: str) -> Path:
        return self.root / "checkpoints" / role / f"seed{seed}" / problem

    def write_curves(self, problem: str, runs: list[tuple[str, int, Curves]]) -> list[Path]:
        self.write_json(f"curves/{problem}.json",
                        [{"role": r, "seed": s, **c.to_json()} for r, s, c in runs])
        return plot_curves(runs, problem, self.root / "curves")


def write_comparison(root: str | Path, c: Comparison) -> RunDirectory:
    """Everything about a comparison, as files (see the module docstring)."""
    import torch

    from .report import comparison_json, summary

    rundir = RunDirectory(root)
    rundir.write_mixer("candidate", c.candidate)
    if c.baseline is not None:
        rundir.write_mixer("baseline", c.baseline)
    rundir.write_json("environment.json", capture_environment(torch.device(c.device)).to_json())
    rundir.write_json("seeds.json", {"seeds": list(c.seeds),
                                     "excluded": [list(e) for e in c.excluded]})
    report = comparison_json(c)
    b = c.budget
    rundir.write_json("config.json", {
        "task": b.task.value, "preset": b.preset.value, "budget_key": b.key,
        "metric": b.metric.name, "seeds": list(c.seeds), "device": c.device,
        "schedule": {"seeds": list(b.schedule.seeds), "looks": list(b.schedule.looks)},
        "rule": asdict(b.rule), "grid": [asdict(h) for h in b.grid],
        "selection_seeds": None if b.selection_seeds is None else list(b.selection_seeds),
        "tolerance": b.tolerance,
        "problems": [{"name": p.name, "definition": p.definition(), "shape": shape_json(p.shape),
                      "train": {**asdict(cfg), "betas": list(cfg.betas)}}
                     for p, cfg in b.problems],
        "matching": report["matching"]})
    rundir.write_json("metrics.json", report)
    for problem, _ in b.problems:
        rundir.write_curves(problem.name, [(r.role.value, r.seed, r.result.curves)
                                           for r in c.runs if r.problem == problem.name])
    rundir.write_text("report.txt", summary(c) + "\n")
    return rundir
