"""Writes of the search into the experiment store (tables from schema.py)."""

from __future__ import annotations

import sqlite3
import time

from linarch.search.records import Candidate


def record_candidate(
    conn: sqlite3.Connection, run_id: str, candidate: Candidate, outcome: str
) -> None:
    """Upsert one evaluated candidate (a resumed run may write the same row again)."""
    r = candidate.result
    p = candidate.profile
    with conn:
        conn.execute(
            "INSERT OR REPLACE INTO search_candidates (run_id, candidate_id, name, "
            "structural_hash, source, motivation, parent_ids, island, generation, origin, "
            "outcome, stages_passed, score, ci_low, ci_high, verdict, flops_per_token, "
            "state_bytes, cost_usd, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
                candidate.id,
                p.name,
                p.structural_hash,
                candidate.source,
                candidate.motivation,
                ",".join(candidate.parent_ids),
                candidate.island,
                candidate.generation,
                candidate.origin,
                outcome,
                candidate.stages_passed,
                None if r is None else r.score,
                None if r is None else r.ci_low,
                None if r is None else r.ci_high,
                None if r is None else r.verdict,
                p.flops_per_token,
                p.state_bytes,
                candidate.cost_usd,
                time.time(),
            ),
        )

