"""A run directory: everything needed to read, rerun and audit one experiment.

    config.json        task, preset, seeds, budgets, model shapes, parameter matching
    candidate.lin      the candidate's DSL source (baseline.lin likewise)
    compiled/          the generated code of each mixer
    seeds.json         the seeds, and which runs each one produced
    environment.json   package versions, device, threads
    metrics.json       every run's metrics and outcome, the per-seed scores, the comparison
    curves/            loss and metric curves, as JSON and PNG
    checkpoints/       trained models, when asked for (role/seed/problem)
    report.txt         the summary the CLI printed
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .mixers import MixerSpec, compiled_code
from .plots import plot_curves
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
