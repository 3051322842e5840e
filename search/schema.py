"""The search's own tables in the SQLite experiment store (all prefixed `search_`).

linarch.evaluation owns the store file and its tables; the search adds lessons (its long-term
memory, shared across runs) and a copy of every evaluated candidate, so one query can join a
candidate's lineage with the evaluation's per-seed metrics. The store runs in WAL mode so the
evaluation's writers and the search can use it at the same time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1

_TABLES = (
    """CREATE TABLE IF NOT EXISTS search_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL)""",
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


def connect(path: Path | str) -> sqlite3.Connection:
    """Open the store, in WAL mode, with the search tables present."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=30000")
    ensure_schema(conn)
    return conn


def ensure_schema(conn: sqlite3.Connection) -> None:
    with conn:
        for statement in _TABLES:
            conn.execute(statement)
        row = conn.execute("SELECT value FROM search_meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO search_meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(
                f"store schema version {row[0]} is newer than this linarch ({SCHEMA_VERSION})"
            )


def search_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'search\\_%' ESCAPE '\\'"
    ).fetchall()
    return sorted(r[0] for r in rows)
