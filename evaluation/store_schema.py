"""The experiment store's schema, as numbered migrations per component.

Each component of linarch that keeps tables (evaluation here; the search, for its candidates
and lessons, in linarch.search.schema) owns a tuple of migrations and its own version row in
`schema_versions`, so it can add tables without editing this module. A store written by a newer
linarch (a version past the newest migration) is refused rather than misread. Migrations run in one
transaction each: a crash leaves the store at the previous version, never half-migrated.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_versions (
    component  TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


EVALUATION = "evaluation"

EVALUATION_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "mixers, experiments and training runs",
        (
            """
            CREATE TABLE mixers (
                id              INTEGER PRIMARY KEY,
                name            TEXT NOT NULL,
                structural_hash TEXT NOT NULL,
                code_hash       TEXT NOT NULL,
                source          TEXT NOT NULL,
                compiled_code   TEXT NOT NULL DEFAULT '',
                flops_per_token INTEGER NOT NULL,
                state_bytes     INTEGER NOT NULL,
                created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
                UNIQUE (structural_hash, code_hash)
            )
            """,
            """
            CREATE TABLE experiments (
                id                  INTEGER PRIMARY KEY,
                task                TEXT NOT NULL,
                preset              TEXT NOT NULL,
                candidate_mixer_id  INTEGER NOT NULL REFERENCES mixers(id),
                baseline_mixer_id   INTEGER REFERENCES mixers(id),
                seeds               TEXT NOT NULL,
                metric              TEXT NOT NULL,
                higher_is_better    INTEGER NOT NULL,
                mean_difference     REAL,
                ci_low              REAL,
                ci_high             REAL,
                verdict             TEXT,
                report              TEXT NOT NULL DEFAULT '{}',
                run_dir             TEXT NOT NULL DEFAULT '',
                environment         TEXT NOT NULL DEFAULT '{}',
                created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
            )
            """,
            """
            CREATE TABLE runs (
                id                    INTEGER PRIMARY KEY,
                experiment_id         INTEGER REFERENCES experiments(id),
                mixer_id              INTEGER NOT NULL REFERENCES mixers(id),
                role                  TEXT NOT NULL,
                task                  TEXT NOT NULL,
                preset                TEXT NOT NULL,
                problem               TEXT NOT NULL,
                seed                  INTEGER NOT NULL,
                hidden_size           INTEGER NOT NULL,
                params_total          INTEGER NOT NULL,
                params_non_embedding  INTEGER NOT NULL,
                outcome               TEXT NOT NULL,
                error                 TEXT NOT NULL DEFAULT '',
                steps                 INTEGER NOT NULL,
                metrics               TEXT NOT NULL DEFAULT '{}',
                curves                TEXT NOT NULL DEFAULT '{}',
                timings               TEXT NOT NULL DEFAULT '{}',
                config                TEXT NOT NULL DEFAULT '{}',
                environment           TEXT NOT NULL DEFAULT '{}',
                created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
            )
            """,
            "CREATE INDEX runs_by_mixer ON runs (mixer_id, task, preset, problem)",
            "CREATE INDEX runs_by_experiment ON runs (experiment_id)",
        ),
    ),
    Migration(
        2,
        "finished runs by key (the baseline cache), budget keys on experiments and runs",
        (
            """
            CREATE TABLE run_cache (
                key         TEXT PRIMARY KEY,
                mixer       TEXT NOT NULL,
                budget_key  TEXT NOT NULL,
                problem     TEXT NOT NULL,
                seed        INTEGER NOT NULL,
                outcome     TEXT NOT NULL,
                result      TEXT NOT NULL,
                created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
            )
            """,
            "CREATE INDEX run_cache_by_mixer ON run_cache (mixer, budget_key)",
            "ALTER TABLE experiments ADD COLUMN budget_key TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE runs ADD COLUMN budget_key TEXT NOT NULL DEFAULT ''",
        ),
    ),
)


def schema_version(conn: sqlite3.Connection, component: str) -> int:
    conn.execute(BOOTSTRAP)
    row = conn.execute(
        "SELECT version FROM schema_versions WHERE component = ?", (component,)
    ).fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, component: str, migrations: tuple[Migration, ...]) -> int:
    """Bring `component` to its newest version; returns that version.

    `conn` must be in autocommit mode (isolation_level=None): each migration takes the write
    lock with BEGIN IMMEDIATE, re-reads the version (another process may have migrated first)
    and commits its statements and the new version together.
    """
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise ValueError(f"{component}: migration versions must be increasing from 1")
    conn.execute(BOOTSTRAP)
    stored = schema_version(conn, component)
    if versions and stored > versions[-1]:
        raise RuntimeError(f"the store's {component} schema (version {stored}) is newer than "
                           f"this linarch knows ({versions[-1]}): upgrade linarch")
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn, component) >= migration.version:
                conn.execute("COMMIT")
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version, "
                "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                (component, migration.version),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return schema_version(conn, component)
