"""How the loop asks for proposals: rejections before training are free and the proposer is
told why, a rewrite is caught after vetting, proposals are written while workers evaluate,
and a run stopped and resumed proposes exactly what an uninterrupted run proposes."""

from __future__ import annotations

import time

from test_search_loop import SEED, ScriptedProposer, check_journal, config_text, make_loop

from linarch.search.executor import LocalExecutor
from linarch.search.jsonl import read_jsonl
from linarch.search.proposer import Proposal
from linarch.search.sandbox import Limits
from linarch_testing.search_fakes import InlineExecutor, ToyMutationProposer, toy_source


def events_of(loop, kind):
    return [e for e in read_jsonl(loop.run_dir.journal) if e["event"] == kind]


def test_a_duplicate_is_free_and_the_next_attempt_is_told_and_keeps_the_parent(tmp_path):
    good = toy_source("Good", gate="scalar")
    again = toy_source("Again", gate="scalar")  # the same program under another name
    other = toy_source("Other", state="dplr")
    proposer = ScriptedProposer([good, again, other])
    loop = make_loop(tmp_path, config_text(max_candidates=2), proposer, InlineExecutor(1))
    summary = loop.run()
    assert summary.reason == "max_candidates" and summary.candidates == 2
    rejected = events_of(loop, "rejected")
    assert [(e["id"], e["reason"], e["nearest"]) for e in rejected] == [
        ("c0002", "duplicate", "c0001")]
    second, third = proposer.requests[1], proposer.requests[2]
    assert third.candidate_id == "c0003"  # the next attempt: the same parent, and told why
    assert [p.id for p in third.parents] == [p.id for p in second.parents]
    assert third.feedback == ("c0002: already tried: the same program as c0001",)
    started = {e["id"]: e for e in events_of(loop, "proposal_started")}
    assert started["c0003"]["island"] == started["c0002"]["island"]


def test_a_rewrite_is_caught_by_its_behaviour_and_is_free(tmp_path):
    """`beta 2` on a toy state without a delta rule changes nothing it computes: a new hash
    and a new graph, but the same fingerprint. The second program is 'equivalent' after
    vetting, its charge is given back, and the run still evaluates max_candidates programs."""
    first = toy_source("First", state="scalar", gate="diagonal")
    rewrite = toy_source("Rewrite", state="scalar", gate="diagonal", beta=2)
    proposer = ScriptedProposer([first, rewrite, toy_source("Third", state="householder")])
    loop = make_loop(tmp_path, config_text(max_candidates=2), proposer, InlineExecutor(1))
    summary = loop.run()
    assert summary.candidates == 2 and summary.reason == "max_candidates"
    (rejected,) = events_of(loop, "rejected")
    assert rejected["id"] == "c0002" and rejected["reason"] == "equivalent"
    assert rejected["nearest"] == "c0001" and rejected["similarity"] == 1.0
    assert [e["id"] for e in events_of(loop, "accepted")] == ["s000", "c0001", "c0002",
                                                              "c0003"]
    vetted = {e["id"]: e for e in events_of(loop, "vetted")}
    assert vetted["c0001"]["profile"]["shape"] == [["dim", 32]]
    assert vetted["c0001"]["profile"]["fingerprint"]


def test_stopped_and_resumed_run_proposes_what_an_uninterrupted_run_proposes(tmp_path):
    """The proposer's randomness comes from the candidate's index, and the archive from the
    journal: a run stopped after 3 candidates and resumed with a budget of 6 makes the same
    proposals, in the same order, as a run with a budget of 6 from the start."""
    straight = make_loop(tmp_path, config_text(max_candidates=6), ToyMutationProposer(seed=7),
                         InlineExecutor(2), name="straight")
    straight.run()
    stopped = make_loop(tmp_path, config_text(max_candidates=3), ToyMutationProposer(seed=7),
                        InlineExecutor(2), name="resumed")
    stopped.run()
    config = stopped.run_dir.config_path
    config.write_text(config.read_text().replace("max_candidates = 3", "max_candidates = 6"))
    resumed = make_loop(tmp_path, "", ToyMutationProposer(seed=7), InlineExecutor(2),
                        name="resumed")
    resumed.run()

    def proposals(loop):
        return [(e["id"], e["source"], tuple(e["parents"])) for e in events_of(loop, "proposed")]

    assert proposals(resumed) == proposals(straight)
    check_journal(read_jsonl(resumed.run_dir.journal))
    sources = [s for _, s, _ in proposals(resumed)]
    assert len(set(sources)) >= 7  # the seed and at least six different programs


class SlowProposer:
    """Takes `seconds` per proposal and notes, half way through, whether the executor had a
    job running (a vetting or an evaluation)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.executor = None
        self.overlaps = 0

    def propose(self, request):
        time.sleep(self.seconds / 2)
        self.overlaps += bool(self.executor and self.executor.running_pids())
        time.sleep(self.seconds / 2)
        paths = ("memory", f"fir {request.index + 2}")
        return Proposal(toy_source(f"P{request.index}", paths=paths), "slow", "test")


def test_proposals_are_written_while_workers_evaluate(tmp_path, monkeypatch):
    monkeypatch.setenv("LINARCH_TOY_EVAL_SLEEP", "1.0")
    proposer = SlowProposer(1.0)
    text = config_text(max_candidates=6, proposal_workers=2)
    with LocalExecutor(workers=2, limits=Limits(time_s=60)) as ex:
        proposer.executor = ex
        loop = make_loop(tmp_path, text, proposer, ex, seeds=(SEED,))
        summary = loop.run()
    assert summary.candidates == 6
    # the first two proposals find the workers idle (the seed is done); of the next four,
    # written while vetting and evaluations run, at least three must see a job running
    assert proposer.overlaps >= 3, "proposals waited for the workers instead of overlapping"
    check_journal(read_jsonl(loop.run_dir.journal))
