"""The search's own tables in the experiment store (all prefixed `search_`), as migrations.

linarch.evaluation owns the store file, its schema bookkeeping (`schema_versions`, one version
per component) and its tables; the search adds lessons (its long-term memory, shared across
runs) and a copy of every evaluated candidate, so one query can join a candidate's lineage with
the evaluation's per-seed runs and comparisons. The store runs in WAL mode so the evaluation's
writers (every worker's `compare`) and the search use it at the same time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from linarch.evaluation.store import ExperimentStore
from linarch.evaluation.store_schema import Migration

SEARCH = "search"

_TABLES = (
    """CREATE TABLE IF NOT EXISTS search_lessons (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        candidate_id TEXT NOT NULL,
        text TEXT NOT NULL,
        tags TEXT NOT NULL,            -- comma-separated
        score_delta REAL,              -- candidate score minus parent score
        created REAL NOT NULL,
        UNIQUE (run_id, candidate_id, text))""",
    """CREATE TABLE IF NOT EXISTS search_candidates (
        run_id TEXT NOT NULL,
        candidate_id TEXT NOT NULL,
        name TEXT NOT NULL,
        structural_hash TEXT NOT NULL,
        source TEXT NOT NULL,
        motivation TEXT NOT NULL,
        parent_ids TEXT NOT NULL,      -- comma-separated
        island INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        origin TEXT NOT NULL,
        outcome TEXT NOT NULL,         -- executor Outcome of the last stage run
        stages_passed INTEGER NOT NULL,
        score REAL,
        ci_low REAL,
        ci_high REAL,
        verdict TEXT,
        flops_per_token INTEGER NOT NULL,
        state_bytes INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (run_id, candidate_id))""",
    "CREATE INDEX IF NOT EXISTS search_candidates_hash ON search_candidates (structural_hash)",
)


SEARCH_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "lessons and evaluated candidates (tables of the first search stores are kept; "
                 "their search_meta version row moves to schema_versions)",
              (*_TABLES, "DROP TABLE IF EXISTS search_meta")),
)
SCHEMA_VERSION = SEARCH_MIGRATIONS[-1].version


def connect(path: Path | str) -> sqlite3.Connection:
    """Open the store (the evaluation's tables and the search's, migrated), in WAL mode.

    A store written by a newer linarch is refused (RuntimeError) rather than misread.
    """
    ExperimentStore(path).ensure_schema(SEARCH, SEARCH_MIGRATIONS)
    conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def search_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'search\\_%' ESCAPE '\\'"
    ).fetchall()
    return sorted(r[0] for r in rows)
