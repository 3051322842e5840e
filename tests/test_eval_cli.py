"""`linarch train` end to end on the tiny presets: report, run directory, store, reproducibility."""

from __future__ import annotations

import json
import sqlite3
from statistics import fmean

import pytest

from linarch.evaluation.cli import train_main
from linarch_testing import mixers as mt

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def lin_files(tmp_path):
    paths = {}
    for name in mt.MIXERS:
        path = tmp_path / f"{name}.lin"
        path.write_text(mt.source_of(name))
        paths[name] = str(path)
    with mt.install():
        yield paths


def test_mqar_comparison_writes_everything_and_reproduces(tmp_path, lin_files, capsys):
    args = [lin_files["linear_attention"], "--baseline", lin_files["softmax_attention"],
            "--task", "mqar", "--preset", "tiny", "--seeds", "2", "--store",
            str(tmp_path / "store.db"), "--no-progress"]
    assert train_main([*args, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    for needle in ("seed", "candidate", "baseline", "mean difference", "95% CI", "FLOPs/token",
                   "state bytes", "tokens/s", "non-embedding", "params matched", "kept:",
                   "cost:", "CPU-s"):
        assert needle in printed, needle
    assert any(v in printed for v in ("BETTER", "WORSE", "INDISTINGUISHABLE"))
    assert "INDISTINGUISHABLE: the 95% interval" in printed  # the verdict, in words

    run = tmp_path / "a"
    for name in ("config.json", "candidate.lin", "baseline.lin", "compiled/candidate.py",
                 "compiled/baseline.py", "seeds.json", "environment.json", "metrics.json",
                 "report.txt"):
        assert (run / name).is_file(), name
    assert (run / "candidate.lin").read_text() == mt.source_of("linear_attention")
    pngs = sorted((run / "curves").glob("*.png"))
    assert len(pngs) >= 2 and all(p.read_bytes()[:8] == PNG for p in pngs)
    metrics = json.loads((run / "metrics.json").read_text())
    # every seed tries both learning rates and keeps the better on validation, for both arms
    assert metrics["seeds"] == [0, 1] and len(metrics["runs"]) == 8
    assert metrics["comparison"]["pairs"] == 2
    assert {lr["role"] for lr in metrics["learning_rates"]} == {"candidate", "baseline"}
    env = json.loads((run / "environment.json").read_text())
    assert "torch" in env["packages"] and env["device"] == "cpu"
    assert env["backend"] == "torch"  # no CUDA here: the torch form ran, not the fused kernels

    with sqlite3.connect(tmp_path / "store.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs WHERE experiment_id = 1").fetchone()[0] == 8
        verdict, diff = conn.execute("SELECT verdict, mean_difference FROM experiments").fetchone()
    assert verdict == metrics["comparison"]["verdict"]
    assert diff == pytest.approx(metrics["comparison"]["mean_difference"])

    # same seeds, same machine: the same numbers, exactly; the second time from the store's
    # cache of finished runs, without training
    assert train_main([*args, "--out", str(tmp_path / "b")]) == 0
    again = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert again["scores"] == metrics["scores"]
    assert again["cost"]["candidate_runs"] == again["cost"]["baseline_runs"] == 0
    fresh = tmp_path / "c"
    assert train_main([a for a in args if a not in ("--store", str(tmp_path / "store.db"))]
                      + ["--out", str(fresh)]) == 0
    retrained = json.loads((fresh / "metrics.json").read_text())
    assert retrained["scores"] == metrics["scores"] and retrained["cost"]["baseline_runs"] == 4


def test_mad_score_is_the_mean_over_the_six_tasks(tmp_path, lin_files):
    out = tmp_path / "mad"
    code = train_main([lin_files["linear_attention"], "--no-baseline", "--task", "mad",
                       "--preset", "tiny", "--seeds", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    kept = {(lr["problem"], lr["lr"], lr["weight_decay"]) for lr in metrics["learning_rates"]}
    runs = [r for r in metrics["runs"] if (r["problem"], r["lr"], r["weight_decay"]) in kept]
    assert len(runs) == 6 and len({r["problem"] for r in runs}) == 6
    assert len(metrics["runs"]) == 6 * 3  # each task tries the three (lr, wd) points
    score = metrics["scores"][0]["value"]
    assert score == pytest.approx(fmean(r["metrics"]["accuracy"] for r in runs))
    assert metrics["comparison"] is None


def test_lm_run_saves_checkpoints_with_their_tokenizer(tmp_path, lin_files):
    out = tmp_path / "lm"
    code = train_main([lin_files["linear_attention"], "--no-baseline", "--task", "lm",
                       "--preset", "tiny", "--seeds", "1", "--out", str(out), "--checkpoints",
                       "--lr", "3e-3",
                       "--steps", "4", "--no-progress"])
    assert code == 0
    ckpt = out / "checkpoints" / "candidate" / "seed0" / "lm-stdlib-byte"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "trainer_state.json"):
        assert (ckpt / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metric"] == "val_loss" and not metrics["higher_is_better"]
    run = metrics["runs"][0]
    assert run["steps"] == 4 and "bits_per_byte" in run["metrics"]
    assert "valid_val_loss" in run["metrics"]  # held-out windows the learning-rate choice reads


def test_a_mixer_that_does_not_load_is_reported(tmp_path, lin_files, capsys):
    bad = tmp_path / "bad.lin"
    bad.write_text("not a mixer\n")
    assert train_main([str(bad), "--no-baseline", "--preset", "tiny"]) == 1
    assert "error" in capsys.readouterr().err
    assert train_main([lin_files["linear_attention"], "--seeds", "0"]) == 2
    # a candidate whose width cannot reach the baseline's parameters: refused, with the fix
    assert train_main([lin_files["softmax_attention"], "--baseline",
                       lin_files["linear_attention"], "--preset", "tiny", "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert "cannot match non-embedding parameters" in err and "--tolerance" in err


@pytest.mark.parametrize("command", ["train", "lm-eval"])
def test_forwarded_commands_pass_their_arguments_with_or_without_a_separator(command,
                                                                            monkeypatch):
    import linarch.evaluation.cli
    import linarch.evaluation.lm_eval_model
    from linarch.cli import main

    seen = []
    target = {"train": (linarch.evaluation.cli, "train_main"),
              "lm-eval": (linarch.evaluation.lm_eval_model, "lm_eval_main")}[command]
    monkeypatch.setattr(*target, lambda argv: seen.append(argv) or 0)
    args = ["x.lin", "--task", "mqar", "--", "--literal"]
    assert main([command, *args]) == 0
    assert main([command, "--", *args]) == 0
    assert seen == [args, args]
