"""BM25, the cognition base, lessons in the SQLite store, and the store's search tables."""

from __future__ import annotations

import math
import re

import pytest

from linarch.evaluation.store import ExperimentStore
from linarch.search.bm25 import BM25, tokenize
from linarch.search.cognition import CognitionError, load_cognition, parse_entry
from linarch.search.memory import Lesson, LessonStore, Memory
from linarch.search.schema import SCHEMA_VERSION, SEARCH, connect, search_tables


def test_tokenize_lowercases_drops_stop_words_and_plurals():
    assert tokenize("The Gates of the Delta-Rules, and 2 entries") == [
        "gate", "delta", "rule", "2", "entry"]


def test_bm25_matches_the_formula():
    docs = [["gate", "delta", "gate"], ["delta"], ["fir", "path"]]
    index = BM25(docs, k1=1.5, b=0.75)
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    norm = 1.5 * (1 - 0.75 + 0.75 * 3 / 2)
    assert index.score(["gate"], 0) == pytest.approx(idf * 2 * 2.5 / (2 + norm))
    assert index.score(["gate"], 1) == 0.0
    idf_delta = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    norm1 = 1.5 * (1 - 0.75 + 0.75 * 1 / 2)
    assert index.score(["delta"], 1) == pytest.approx(idf_delta * 2.5 / (1 + norm1))
    assert index.top(["delta"], 5) == sorted(index.top(["delta"], 5), key=lambda p: -p[1])
    assert [i for i, _ in index.top(["delta"], 5)] == [1, 0]  # the shorter document first
    assert index.top(["absent"], 3) == []


def test_cognition_base_has_at_least_twenty_cited_entries():
    entries = load_cognition()
    assert len(entries) >= 20
    assert len({e.id for e in entries}) == len(entries)
    for e in entries:
        assert e.kind == "cognition" and e.tags and len(e.text) > 300, e.id
        assert re.search(r"\((19|20)\d\d\)", e.source), f"{e.id}: no year in its source"
    with_arxiv = [e for e in entries if re.search(r"arXiv:\d{4}\.\d{4,5}", e.source)]
    assert len(with_arxiv) == len(entries)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("negative eigenvalues parity state tracking", "negative-eigenvalues"),
        ("product of several Householder steps per token", "deltaproduct"),
        ("router collapse softmax temperature floor", "routers"),
        ("chunk size overflow gate lower bound", "chunk-gate-bounds"),
        ("long FIR filter path fused with the memory", "fir-paths"),
        ("MQAR associative recall state size", "mqar-capacity"),
        ("per-channel gate on the delta rule Kimi", "kda"),
        ("conjugate gradient regression readout", "mesanet"),
        ("diagonal plus low rank RWKV", "dplr-rwkv7"),
        ("short causal convolution on q k v", "short-conv"),
    ],
)
def test_retrieval_finds_the_relevant_entry(query, expected):
    memory = Memory(load_cognition())
    assert memory.retrieve(query, k=1)[0].id == expected


def test_parse_entry_rejects_missing_fields():
    with pytest.raises(CognitionError, match="source"):
        parse_entry("---\nid: x\ntitle: t\ntags: a\n---\nbody")
    with pytest.raises(CognitionError, match="header"):
        parse_entry("no header")


def test_lessons_persist_in_the_store_and_are_retrieved(tmp_path):
    path = tmp_path / "store.sqlite"
    conn = connect(path)
    store = LessonStore(conn, "run-1")
    lesson = Lesson("a diagonal gate beats a scalar gate at equal state", ("gating",), "c0007",
                    0.031)
    store.add(lesson)
    store.add(lesson)  # a resumed run writing the same lesson again keeps one copy
    conn.close()

    again = LessonStore(connect(path), "run-2")
    entries = again.entries()
    assert len(entries) == 1 and entries[0].kind == "lesson"
    assert entries[0].source == "experiment run-1/c0007, score change +0.0310"
    memory = Memory(load_cognition(), again)
    top = memory.retrieve("diagonal gate scalar gate equal state", k=2)
    assert top[0].id == entries[0].id


def test_search_tables_live_beside_the_evaluation_tables(tmp_path):
    path = tmp_path / "store.sqlite"
    ExperimentStore(path)  # the evaluation's store, created first
    conn = connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert search_tables(conn) == ["search_candidates", "search_lessons"]
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "experiments", "run_cache"} <= names
    assert ExperimentStore(path).schema_version(SEARCH) == SCHEMA_VERSION
    connect(path).close()  # idempotent


def test_a_newer_schema_is_refused(tmp_path):
    conn = connect(tmp_path / "s.sqlite")
    conn.execute("UPDATE schema_versions SET version = 999 WHERE component = 'search'")
    conn.commit()
    with pytest.raises(RuntimeError, match="newer"):
        connect(tmp_path / "s.sqlite")
