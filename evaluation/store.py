"""The experiment store: one SQLite file that several processes share.

WAL journal (readers never block the writer), a busy timeout, and every write in a
`BEGIN IMMEDIATE` transaction: a crashed process leaves either its whole record or none.
Each call opens its own connection, so a store object can be handed to forked or spawned
workers. Rows are written as typed records and read back as typed rows.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .mixers import MixerSpec, compiled_code
from .store_schema import EVALUATION, EVALUATION_MIGRATIONS, Migration, migrate, schema_version


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, default=_finite)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass(frozen=True)
class RunRecord:
    """One training run, as it goes into the `runs` table."""

    mixer_id: int
    role: str
    task: str
    preset: str
    problem: str
    seed: int
    hidden_size: int
    params_total: int
    params_non_embedding: int
    outcome: str
    steps: int
    metrics: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    error: str = ""
    experiment_id: int | None = None
    budget_key: str = ""


@dataclass(frozen=True)
class ExperimentRecord:
    """One candidate-versus-baseline comparison."""

    task: str
    preset: str
    candidate_mixer_id: int
    baseline_mixer_id: int | None
    seeds: tuple[int, ...]
    metric: str
    higher_is_better: bool
    mean_difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    verdict: str | None = None
    report: dict = field(default_factory=dict)
    run_dir: str = ""
    environment: dict = field(default_factory=dict)
    budget_key: str = ""


@dataclass(frozen=True)
class RunRow:
    id: int
    experiment_id: int | None
    mixer_id: int
    role: str
    task: str
    preset: str
    problem: str
    seed: int
    outcome: str
    metrics: dict
    params_total: int


class ExperimentStore:
    """Typed access to the store file at `path` (created and migrated on first use)."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ensure_schema(EVALUATION, EVALUATION_MIGRATIONS)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        with closing(self.connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def ensure_schema(self, component: str, migrations: tuple[Migration, ...]) -> int:
        """Apply `component`'s pending migrations (other components use this to add tables)."""
        with closing(self.connect()) as conn:
            return migrate(conn, component, migrations)

    def schema_version(self, component: str = EVALUATION) -> int:
        with closing(self.connect()) as conn:
            return schema_version(conn, component)

    def add_mixer(self, spec: MixerSpec) -> int:
        """The id of `spec`'s row, inserted on first sight (keyed by structure and code)."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO mixers (name, structural_hash, code_hash, source, "
                "compiled_code, flops_per_token, state_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (spec.name, spec.structural_hash, spec.code_hash, spec.source,
                 compiled_code(spec.layer_cls), spec.flops_per_token, spec.state_bytes),
            )
            row = conn.execute(
                "SELECT id FROM mixers WHERE structural_hash = ? AND code_hash = ?",
                (spec.structural_hash, spec.code_hash),
            ).fetchone()
        return int(row[0])

    def add_experiment(self, record: ExperimentRecord) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO experiments (task, preset, candidate_mixer_id, baseline_mixer_id, "
                "seeds, metric, higher_is_better, mean_difference, ci_low, ci_high, verdict, "
                "report, run_dir, environment, budget_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.task, record.preset, record.candidate_mixer_id,
                 record.baseline_mixer_id, _json(list(record.seeds)), record.metric,
                 int(record.higher_is_better), _real(record.mean_difference),
                 _real(record.ci_low), _real(record.ci_high), record.verdict,
                 _json(record.report), record.run_dir, _json(record.environment),
                 record.budget_key),
            )
            return int(cursor.lastrowid)

    def add_run(self, record: RunRecord) -> int:
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (experiment_id, mixer_id, role, task, preset, problem, seed, "
                "hidden_size, params_total, params_non_embedding, outcome, error, steps, "
                "metrics, curves, timings, config, environment, budget_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.experiment_id, record.mixer_id, record.role, record.task,
                 record.preset, record.problem, record.seed, record.hidden_size,
                 record.params_total, record.params_non_embedding, record.outcome,
                 record.error, record.steps, _json(record.metrics), _json(record.curves),
                 _json(record.timings), _json(record.config), _json(record.environment),
                 record.budget_key),
            )
            return int(cursor.lastrowid)

    def link_runs(self, run_ids: list[int], experiment_id: int) -> None:
        """Attach runs recorded before their experiment row existed."""
        with self.transaction() as conn:
            conn.executemany("UPDATE runs SET experiment_id = ? WHERE id = ?",
                             [(experiment_id, rid) for rid in run_ids])

    def runs(self, *, mixer_id: int | None = None, experiment_id: int | None = None,
             task: str | None = None) -> list[RunRow]:
        clauses, args = [], []
        for column, value in (("mixer_id", mixer_id), ("experiment_id", experiment_id),
                              ("task", task)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with closing(self.connect()) as conn:
            rows = conn.execute(
                "SELECT id, experiment_id, mixer_id, role, task, preset, problem, seed, "
                f"outcome, metrics, params_total FROM runs {where} ORDER BY id", args
            ).fetchall()
        return [RunRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9]),
                       r[10]) for r in rows]

    def count(self, table: str) -> int:
        if table not in {"mixers", "experiments", "runs", "run_cache"}:
            raise ValueError(f"unknown table {table!r}")
        with closing(self.connect()) as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _real(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)
