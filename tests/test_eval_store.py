"""The SQLite experiment store: schema versions, concurrent writers, crashes, extensions."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3

import pytest

from linarch.evaluation.store import ExperimentRecord, ExperimentStore, RunRecord
from linarch.evaluation.store_schema import EVALUATION, EVALUATION_MIGRATIONS, Migration
from linarch_testing import mixers as mt


def run_record(mixer_id: int, seed: int, **overrides) -> RunRecord:
    base = dict(mixer_id=mixer_id, role="candidate", task="mqar", preset="tiny",
                problem="mqar-T32", seed=seed, hidden_size=32, params_total=100,
                params_non_embedding=50, outcome="ok", steps=10,
                metrics={"accuracy": 0.5 + seed / 1000}, curves={"train_loss": [[0, 1.0]]})
    base.update(overrides)
    return RunRecord(**base)


def test_schema_is_versioned_and_in_wal_mode(tmp_path):
    store = ExperimentStore(tmp_path / "s.db")
    assert store.schema_version(EVALUATION) == EVALUATION_MIGRATIONS[-1].version
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_versions", "mixers", "experiments", "runs"} <= tables
    ExperimentStore(tmp_path / "s.db")  # reopening migrates nothing twice
    assert store.count("runs") == 0


def test_records_round_trip(tmp_path):
    store = ExperimentStore(tmp_path / "s.db")
    spec = mt.spec("linear_attention")
    mixer = store.add_mixer(spec)
    assert store.add_mixer(spec) == mixer and store.count("mixers") == 1
    runs = [store.add_run(run_record(mixer, seed)) for seed in range(3)]
    exp = store.add_experiment(ExperimentRecord(
        task="mqar", preset="tiny", candidate_mixer_id=mixer, baseline_mixer_id=None,
        seeds=(0, 1, 2), metric="accuracy", higher_is_better=True, mean_difference=float("nan")))
    store.link_runs(runs, exp)
    rows = store.runs(experiment_id=exp)
    assert [r.seed for r in rows] == [0, 1, 2]
    assert rows[1].metrics == {"accuracy": 0.501} and rows[0].outcome == "ok"
    with sqlite3.connect(tmp_path / "s.db") as conn:
        source, code = conn.execute("SELECT source, compiled_code FROM mixers").fetchone()
        assert conn.execute("SELECT mean_difference FROM experiments").fetchone()[0] is None
    assert source == spec.source and "class TestLinearAttention" in code


def _writer(path: str, mixer: int, worker: int, count: int) -> None:
    store = ExperimentStore(path)
    for i in range(count):
        store.add_run(run_record(mixer, seed=worker * 1000 + i))


def test_several_processes_write_without_losing_rows(tmp_path):
    path = str(tmp_path / "s.db")
    mixer = ExperimentStore(path).add_mixer(mt.spec("linear_attention"))
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_writer, args=(path, mixer, w, 25)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    store = ExperimentStore(path)
    assert store.count("runs") == 100
    assert len({r.seed for r in store.runs()}) == 100


def _die_inside_a_transaction(path: str, mixer: int) -> None:
    store = ExperimentStore(path)
    with store.transaction() as conn:
        conn.execute("INSERT INTO runs (mixer_id, role, task, preset, problem, seed, "
                     "hidden_size, params_total, params_non_embedding, outcome, steps) "
                     "VALUES (?, 'x', 'x', 'x', 'x', 0, 1, 1, 1, 'ok', 1)", (mixer,))
        os._exit(1)  # a crash: no commit, no rollback, no clean close


def test_a_crash_mid_transaction_leaves_the_store_intact(tmp_path):
    path = str(tmp_path / "s.db")
    store = ExperimentStore(path)
    mixer = store.add_mixer(mt.spec("linear_attention"))
    store.add_run(run_record(mixer, 1))
    proc = multiprocessing.get_context("fork").Process(target=_die_inside_a_transaction,
                                                       args=(path, mixer))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 1
    assert store.count("runs") == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.add_run(run_record(mixer, 2))  # and the write lock was released
    assert store.count("runs") == 2
    with pytest.raises(RuntimeError), store.transaction() as conn:
        conn.execute("DELETE FROM runs")
        raise RuntimeError("abort")
    assert store.count("runs") == 2


def test_another_component_adds_its_own_tables(tmp_path):
    store = ExperimentStore(tmp_path / "s.db")
    lineage = (
        Migration(1, "candidates", ("CREATE TABLE candidates (id INTEGER PRIMARY KEY, "
                                    "mixer_id INTEGER REFERENCES mixers(id))",)),
        Migration(2, "lineage", ("CREATE TABLE lineage (child INTEGER, parent INTEGER)",)),
    )
    assert store.ensure_schema("search", lineage) == 2
    assert store.ensure_schema("search", lineage) == 2
    assert store.schema_version(EVALUATION) == EVALUATION_MIGRATIONS[-1].version
    broken = (*lineage, Migration(3, "bad", ("CREATE TABLE ok3 (x)", "NOT SQL")))
    with pytest.raises(sqlite3.OperationalError):
        store.ensure_schema("search", broken)
    assert store.schema_version("search") == 2  # the failed migration left nothing behind
    with sqlite3.connect(tmp_path / "s.db") as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "lineage" in names and "ok3" not in names
    with pytest.raises(ValueError):
        store.ensure_schema("other", (Migration(2, "x", ()), Migration(1, "y", ())))
