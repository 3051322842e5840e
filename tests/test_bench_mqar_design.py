"""The MQAR design bench's spread summary: what a score's seed-to-seed spread would be.

`--spread` reads the bench's JSON lines and pairs arms by seed, so an A/A pair (one mixer, two
initialisations) shows the spread any comparison carries, and two mixers show the signal."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "sanity" / "bench_mqar_design.py"
_spec = importlib.util.spec_from_file_location("bench_mqar_design", BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def row(mixer: str, seed: int, accuracy: float, salt: int = 0) -> dict:
    job = {"mixer": f"examples/{mixer}.lin", "lr": 0.01, "seed": seed, "steps": 2000,
           **({"salt": salt} if salt else {})}
    return {"job": job, "outcome": "ok", "metrics": {"accuracy": accuracy, "loss": 0.5}}


def test_arms_are_paired_by_seed_and_the_spread_is_the_sd_of_the_differences():
    rows = [row("deltanet", 0, 0.80), row("deltanet", 1, 0.70),
            row("deltanet", 0, 0.78, salt=1), row("deltanet", 1, 0.70, salt=1),
            row("linear_attention", 1, 0.60)]
    lines = bench.spread(rows)
    assert lines[0] == ("accuracy: deltanet lr 0.01 steps 2000 0.750, deltanet lr 0.01 steps "
                        "2000 salt 1 0.740, linear_attention lr 0.01 steps 2000 0.600")
    # The A/A pair: differences +0.02 and 0.00 over seeds 0 and 1.
    assert lines[1] == ("  deltanet lr 0.01 steps 2000 - deltanet lr 0.01 steps 2000 salt 1: "
                        "+0.010, SD 0.014 over 2 seeds")
    # One shared seed gives no spread, so no line; the loss is not an accuracy, so no block.
    assert len(lines) == 2


def test_the_cli_summarises_a_file_without_training(tmp_path, capsys):
    out = tmp_path / "runs.jsonl"
    out.write_text("\n".join(json.dumps(r) for r in [row("deltanet", 0, 0.8),
                                                     row("deltanet", 0, 0.7, salt=1)]) + "\n")
    assert bench.main(["--mixers", "unused", "--spread", "--out", str(out)]) == 0
    assert "salt 1 0.700" in capsys.readouterr().out
