"""The search loop: scheduling, the cascade, free rejections with feedback, vetting, clean
stops, LLM roles end to end, and resume after `kill -9` with no candidate lost, no finished
evaluation run again and no proposal repeated."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from linarch.search.executor import LocalExecutor
from linarch.search.jsonl import read_jsonl
from linarch.search.loop import Components, SearchLoop, SeedProgram
from linarch.search.proposer import Proposal
from linarch.search.rundir import RunDir
from linarch.search.sandbox import Limits
from linarch.search.schema import connect
from linarch.search.session import build_components
from linarch.search.state import RunState
from linarch_testing import search_fakes as fakes
from linarch_testing.openai_server import FakeOpenAIServer, reply, status
from linarch_testing.search_fakes import (
    InlineExecutor,
    ToyMutationProposer,
    toy_analyze,
    toy_check,
    toy_source,
)

TESTS = str(Path(__file__).resolve().parent)
SEED = SeedProgram("toy_delta", toy_source("Base"))

CONFIG = """
[run]
name = "t"
max_candidates = {max_candidates}
max_proposals = {max_proposals}
proposal_workers = {proposal_workers}
seeds = [0, 1]
seed_programs = []
[memory]
analyze = {analyze}
entries = 3
[islands]
count = 2
migration_interval = 3
selection = "{selection}"
[[cascade]]
stage = "smoke"
min_score = 0.0
[[cascade]]
stage = "full"
[executor]
workers = 2
time_limit_s = 60
[components]
proposer = "{proposer}"
check = "linarch_testing.search_fakes:toy_check"
analyze = "linarch_testing.search_fakes:toy_analyze"
evaluate = "linarch_testing.search_fakes:toy_evaluate"
vet = "linarch_testing.search_fakes:toy_vet"
{extra}
"""


def config_text(max_candidates=8, analyze="false", selection="weighted",
                proposer="linarch_testing.search_fakes:build_toy_proposer", extra="",
                proposal_workers=0, max_proposals=60):
    """A toy search: the toy language is small, so its mutations often rediscover a program
    (free rejections); max_proposals leaves room for them."""
    return CONFIG.format(max_candidates=max_candidates, analyze=analyze, selection=selection,
                         proposer=proposer, extra=extra, proposal_workers=proposal_workers,
                         max_proposals=max_proposals)


def make_loop(tmp_path, text, proposer, executor, *, evaluate=fakes.toy_evaluate,
              check=toy_check, seeds=(SEED,), name="run", vet=fakes.toy_vet):
    path = tmp_path / name
    run = RunDir.open(path) if (path / "config.toml").exists() else RunDir.create(path, text)
    config = run.config()
    comps = Components(proposer, check, toy_analyze, evaluate,
                       store=connect(run.store_path(config)), vet=vet)
    return SearchLoop(config, run, comps, executor, seed_programs=seeds)


class ScriptedProposer:
    """Proposes the given programs in order (then repeats the last); keeps every request."""

    def __init__(self, sources):
        self.sources = list(sources)
        self.calls = []
        self.requests = []

    def propose(self, request):
        self.calls.append([p.id for p in request.parents])
        self.requests.append(request)
        source = self.sources.pop(0) if len(self.sources) > 1 else self.sources[0]
        return Proposal(source, "scripted", "test")


def check_journal(events):
    """Invariants of any journal: one terminal event per proposal, no stage run twice, ids
    handed out in order without gaps."""
    proposed = [e["id"] for e in events if e["event"] == "proposed"]
    assert len(proposed) == len(set(proposed)), "a candidate was proposed twice"
    numbered = sorted(int(c[1:]) for c in proposed if c.startswith("c"))
    assert numbered == list(range(1, len(numbered) + 1)), numbered
    terminal = Counter(e["id"] for e in events if e["event"] in ("rejected", "evaluated"))
    assert all(n == 1 for n in terminal.values()), terminal
    stages = Counter((e["id"], e["stage"]) for e in events if e["event"] == "stage_done")
    assert all(n == 1 for n in stages.values()), stages
    return proposed, terminal


# ------------------------------------------------------------------------------ scheduling


class HoldingExecutor(InlineExecutor):
    """Runs the jobs of the ids in `held` only after `waits` calls of `wait`: a seed program
    that trains longer than the others."""

    def __init__(self, workers: int, held: set[str], waits: int):
        super().__init__(workers)
        self.held, self.waits = held, waits

    def wait(self, timeout=None):
        self.waits -= 1
        if self.waits > 0:
            held = [j for j in self._queue if j[0].split("|")[0] in self.held]
            self._queue = [j for j in self._queue if j not in held]
            results = super().wait(timeout)
            self._queue += held
            return results
        return super().wait(timeout)


def test_proposals_start_once_one_seed_is_scored_not_when_all_are(tmp_path):
    slow = SeedProgram("toy_gated", toy_source("Gated", gate="scalar"))
    loop = make_loop(tmp_path, config_text(max_candidates=3), ToyMutationProposer(seed=3),
                     HoldingExecutor(2, {"s001"}, waits=6), seeds=(SEED, slow))
    summary = loop.run()
    assert summary.reason == "max_candidates"
    events = read_jsonl(loop.run_dir.journal)
    order = [(e["event"], e.get("id")) for e in events]
    first_proposal = next(i for i, (ev, _) in enumerate(order) if ev == "proposal_started")
    assert order.index(("evaluated", "s000")) < first_proposal < order.index(("evaluated", "s001"))
    check_journal(events)


def test_loop_runs_the_cascade_to_max_candidates(tmp_path):
    loop = make_loop(tmp_path, config_text(), ToyMutationProposer(seed=3), InlineExecutor(2))
    summary = loop.run()
    assert summary.reason == "max_candidates" and summary.candidates == 8
    events = read_jsonl(loop.run_dir.journal)
    proposed, terminal = check_journal(events)
    evaluated = [e["id"] for e in events if e["event"] == "evaluated"]
    assert len(evaluated) == 9 and summary.evaluated == 9  # the seed and 8 candidates
    rejected = [e for e in events if e["event"] == "rejected"]
    assert summary.proposals == 8 + len(rejected)  # rejections were free
    assert set(terminal) == set(proposed)  # nothing left behind
    for cid in proposed:
        done = [e for e in events if e["event"] == "stage_done" and e["id"] == cid]
        if not done:
            continue
        smoke = done[0]["result"]["score"]
        assert [e["stage"] for e in done] == (["smoke", "full"] if smoke >= 0 else ["smoke"])
    best = loop.state.archive.best()
    assert best.score > loop.state.archive.candidates["s000"].score
    assert all((loop.run_dir.programs / f"{c}.lin").exists() for c in proposed[1:])
    rows = loop.c.store.execute("SELECT COUNT(*) FROM search_candidates").fetchone()[0]
    assert rows == summary.evaluated
    # a replay of the journal rebuilds exactly the live state
    again = RunState.replay(loop.config, events)
    live = loop.state.archive
    assert again.archive.best().id == best.id
    for a, b in zip(again.archive.islands, live.islands):
        assert [c.id for c in a.elites()] == [c.id for c in b.elites()]
    assert {c: again.archive.arm(c) for c in live.candidates} == {
        c: live.arm(c) for c in live.candidates}


def test_rejections_before_training(tmp_path):
    leaky = toy_source("Leaky") + "mean over time\n"
    good = toy_source("Good", gate="scalar")
    renamed = good.replace("Good", "Renamed")

    def check(source):
        if "CRASH" in source:
            raise RuntimeError("compiler bug")
        return toy_check(source)

    proposer = ScriptedProposer([leaky, good, renamed, "mixer CRASH\n", toy_source("Base2")])
    loop = make_loop(tmp_path, config_text(max_candidates=5, max_proposals=0), proposer,
                     InlineExecutor(1), check=check)
    summary = loop.run()
    events = read_jsonl(loop.run_dir.journal)
    check_journal(events)
    reasons = {e["id"]: e["reason"] for e in events if e["event"] == "rejected"}
    assert {k: reasons[k] for k in ("c0001", "c0003", "c0004", "c0005")} == {
        "c0001": "invalid", "c0003": "duplicate", "c0004": "check_crashed",
        "c0005": "duplicate"}  # Base2 is the seed under another name
    invalid = next(e for e in events if e["event"] == "rejected" and e["id"] == "c0001")
    assert invalid["diagnostics"][0]["code"] == "LA201"
    assert summary.evaluated == 2 and summary.candidates == 1  # the seed and c0002
    # rejections are free: the proposer went on (Base2 forever) until its attempts ran out
    assert summary.reason == "max_proposals" and summary.proposals == 15


def test_failed_evaluations_are_recorded_and_never_parents(tmp_path):
    crash = toy_source("Crash", paths=("memory", "conv 4"))
    error = toy_source("Error", paths=("memory", "value"))
    good = toy_source("Good", gate="diagonal")
    proposer = ScriptedProposer([crash, error, good])
    with LocalExecutor(workers=3, limits=Limits(time_s=60)) as ex:
        loop = make_loop(tmp_path, config_text(max_candidates=3), proposer, ex,
                         evaluate=fakes.toy_evaluate_crashing)
        summary = loop.run()
    assert summary.evaluated == 4
    assert loop.state.outcomes == Counter({"ok": 2, "crash": 1, "error": 1})
    events = read_jsonl(loop.run_dir.journal)
    crashed = next(e for e in events if e["event"] == "stage_done" and e["id"] == "c0001")
    assert crashed["outcome"] == "crash" and "SIGSEGV" in crashed["error"]
    failed = {"c0001", "c0002"}
    for island in loop.state.archive.islands:
        assert not failed & {c.id for c in island.elites()}
    assert all(not failed & set(parents) for parents in proposer.calls)
    # a failed candidate has no score (not the smoke stage's) and says where it failed
    crash = loop.state.archive.candidates["c0001"]
    assert crash.result is None and crash.outcome == "crash"
    assert crash.failure.startswith("smoke: crash: process died from SIGSEGV")
    error = loop.state.archive.candidates["c0002"]
    assert error.outcome == "error" and "refuses value paths" in error.failure


def test_best_of_n_ablation_always_starts_from_the_seeds(tmp_path):
    proposer = ToyMutationProposer(seed=5)
    loop = make_loop(tmp_path, config_text(max_candidates=6, selection="seeds"), proposer,
                     InlineExecutor(2))
    loop.run()
    parents = [e["parents"] for e in read_jsonl(loop.run_dir.journal)
               if e["event"] == "proposed" and e["origin"] != "seed"]
    assert len(parents) >= 6 and all(p == ["s000"] for p in parents)


def test_resuming_a_finished_run_does_nothing_new(tmp_path):
    make_loop(tmp_path, config_text(max_candidates=4), ToyMutationProposer(seed=1),
              InlineExecutor(2)).run()
    before = read_jsonl(tmp_path / "run" / "journal.jsonl")
    executor = InlineExecutor(2)
    summary = make_loop(tmp_path, "", ToyMutationProposer(seed=2), executor).run()
    after = read_jsonl(tmp_path / "run" / "journal.jsonl")
    assert executor.submitted == [] and summary.candidates == 4
    assert [e["event"] for e in after[len(before):]] == ["run_started", "stopped"]


# ------------------------------------------------------------------------------ LLM roles


VARIANTS = [
    toy_source(f"V{i}", state=s, gate=g, paths=p)
    for i, (s, g, p) in enumerate(itertools.product(
        ["delta", "dplr", "householder"], ["scalar", "diagonal"],
        [("memory", "fir 3"), ("memory", "fir 31", "value"), ("memory",)]))
]


def llm_responder():
    fresh = iter(VARIANTS)
    researcher_calls = itertools.count()

    def respond(body):
        system = body["messages"][0]["content"]
        if "You are a researcher" in system:
            n = next(researcher_calls)
            if n == 0:  # needs a repair: it leaks the future
                return reply(f"Motivation: leak on purpose.\n```lin\n{next(fresh)}mean over time"
                             "\n```", prompt_tokens=900, completion_tokens=300)
            if n == 1:  # Python instead of DSL
                return reply("```python\nimport torch\nclass M(torch.nn.Module): pass\n```")
            return reply(f"Motivation: variant {n}.\n```lin\n{next(fresh)}```",
                         prompt_tokens=900, completion_tokens=300)
        if "You are the engineer" in system:
            return reply(f"```lin\n{next(fresh)}```", prompt_tokens=700, completion_tokens=200)
        assert "You are the analyst" in system
        cid = body["messages"][-1]["content"].split()[2]
        return reply("ANALYSIS: it moved the score.\nLESSONS:\n- [gating] a gated delta "
                     f"transition with a fir path helped in {cid}", prompt_tokens=500,
                     completion_tokens=100)

    return respond


def llm_config(server, max_candidates, budget=None, retries=2):
    """An LLM search on the toy compiler; `server` None leaves BASE_URL to fill in."""
    budget_line = "" if budget is None else f"budget_usd = {budget}"
    url = "BASE_URL" if server is None else server.base_url
    return config_text(max_candidates=max_candidates, analyze="true", proposer="llm", extra=f"""
[llm]
base_url = "{url}"
api_key_env = ""
max_retries = {retries}
backoff_base_s = 0.01
backoff_max_s = 0.02
timeout_s = 5
{budget_line}
[llm.models]
default = "fake-model"
[llm.prices.fake-model]
input_per_1k = 0.001
output_per_1k = 0.002
""")


def llm_loop(tmp_path, text):
    run = RunDir.create(tmp_path / "run", text)
    config = run.config()
    comps = build_components(config, run)
    return SearchLoop(config, run, comps, InlineExecutor(2), seed_programs=[SEED])


def test_llm_search_end_to_end(tmp_path):
    with FakeOpenAIServer(responder=llm_responder()) as srv:
        loop = llm_loop(tmp_path, llm_config(srv, max_candidates=5))
        summary = loop.run()
    assert summary.reason == "max_candidates" and summary.proposals == 5
    events = read_jsonl(loop.run_dir.journal)
    check_journal(events)
    proposed = {e["id"]: e for e in events if e["event"] == "proposed"}
    assert proposed["c0001"]["repairs"] == 1 and proposed["c0002"]["repairs"] == 1
    assert proposed["c0001"]["prompt_versions"] == ["researcher/3", "engineer_repair/1"]
    assert all(e["failure"] is None for e in proposed.values())
    analyzed = {e["id"] for e in events if e["event"] == "analyzed"}
    assert analyzed == {e["id"] for e in events if e["event"] == "evaluated"} - {"s000"}
    lessons = loop.c.memory.lessons.entries()
    assert len(lessons) == len(analyzed)
    # a later proposal's prompt carries a lesson and its parent's analysis
    prompts = [r["messages"][-1]["content"] for r in srv.requests
               if "You are a researcher" in r["messages"][0]["content"]]
    assert "helped in" in prompts[-1] and "it moved the score" in prompts[-1]
    # the task card, per-seed scores and curves, and the parent's other children
    last = prompts[-1]
    assert "# The task" in last and "DeltaNet (the baseline, the score's zero): mqar_acc " \
        "0.8000" in last and "candidates left" in last and "Measured: toy recall" in last
    assert "Per seed: this program" in last and "Curve (seed 0): 100: " in last
    with_siblings = [p for p in prompts if "What became of this parent's last children" in p]
    assert with_siblings and "- c0001: score +" in with_siblings[-1]
    assert "linarch in brief" in last  # the condensed language reference, by default
    transcript = read_jsonl(loop.run_dir.transcript)
    tags = {r["tags"].get("candidate") for r in transcript if r["event"] == "response"}
    assert {"c0001", "c0005"} <= tags and "s000" not in tags
    spent = sum(r["cost_usd"] for r in transcript if r["event"] == "response")
    assert summary.spent_usd == pytest.approx(spent) and spent > 0
    assert loop.state.archive.candidates["c0003"].cost_usd == pytest.approx(
        sum(r["cost_usd"] for r in transcript
            if r["event"] == "response" and r["tags"].get("candidate") == "c0003"))


def test_budget_exhaustion_is_a_clean_stop(tmp_path):
    # each researcher call costs 0.9e-3 + 0.6e-3 = $0.0015; the analyzer $0.0007
    with FakeOpenAIServer(responder=llm_responder()) as srv:
        loop = llm_loop(tmp_path, llm_config(srv, max_candidates=50, budget=0.006))
        summary = loop.run()
    assert summary.reason == "budget"
    assert 0 < summary.proposals < 50
    events = read_jsonl(loop.run_dir.journal)
    proposed, terminal = check_journal(events)
    assert set(proposed) == set(terminal)  # what was in flight finished and was recorded
    assert events[-1]["event"] == "stopped" and events[-1]["reason"] == "budget"
    assert summary.spent_usd >= 0.006


def test_endpoint_down_is_a_clean_stop(tmp_path):
    with FakeOpenAIServer(responder=lambda body: status(503)) as srv:
        text = llm_config(srv, max_candidates=5, retries=1).replace(
            "analyze = true", "analyze = false")
        loop = llm_loop(tmp_path, text)
        summary = loop.run()
    assert summary.reason == "endpoint_down" and summary.candidates == 0
    assert summary.evaluated == 1  # the seed
    assert len(srv.requests) == 2  # one try and one retry
    events = read_jsonl(loop.run_dir.journal)  # the proposal is left for a resume to ask again
    assert [e["id"] for e in events if e["event"] == "proposal_started"] == ["c0001"]
    assert not [e for e in events if e["event"] == "proposed" and e["id"] == "c0001"]


# ------------------------------------------------------------------------------ kill -9


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_resume_after_kill_9_loses_nothing_and_repeats_nothing(tmp_path):
    (tmp_path / "seed.lin").write_text(toy_source("Base"))
    cfg = tmp_path / "search.toml"
    cfg.write_text(config_text(max_candidates=6).replace("seed_programs = []",
                                                          'seed_programs = ["seed.lin"]'))
    run = tmp_path / "run"
    log = tmp_path / "evaluations.log"
    env = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "LINARCH_TOY_EVAL_LOG": str(log), "LINARCH_TOY_EVAL_SLEEP": "0.2"}
    cmd = [sys.executable, "-m", "linarch.search", "run", "--progress", "plain"]
    first = subprocess.Popen([*cmd, str(cfg), "--run-dir", str(run)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        journal = run / "journal.jsonl"

        def progressed():  # four stages done and at least one running: time to kill
            events = read_jsonl(journal) if journal.exists() else []
            done = [(e["id"], e["stage"]) for e in events if e["event"] == "stage_done"]
            running = {(e["id"], e["stage"]) for e in events if e["event"] == "submitted"}
            return len(done) >= 4 and running - set(done)

        _wait_for(progressed, 120, "the first run to finish four stages")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    before = read_jsonl(journal)
    done_before = {f"run/{e['id']}/{e['stage']}" for e in before
                   if e["event"] == "stage_done"}
    lines_before = log.read_text().splitlines()
    running = {int(line.split()[1]) for line in lines_before if line.startswith("start")}
    running -= {int(line.split()[1]) for line in lines_before if line.startswith("done")}
    for pid in running:  # jobs of the killed loop die with it
        _wait_for(lambda pid=pid: not _alive(pid), 10, f"job {pid} to die")

    second = subprocess.run([*cmd, "--resume", str(run)], env=env, capture_output=True,
                            text=True, timeout=240)
    assert second.returncode == 0, second.stderr[-3000:]
    after = read_jsonl(journal)
    proposed, terminal = check_journal(after)
    assert proposed[0] == "s000" and set(terminal) == set(proposed)
    assert len([e for e in after if e["event"] == "accepted" and e["id"] != "s000"]) - len(
        [e for e in after if e["event"] == "rejected" and e.get("reason") == "equivalent"]) == 6
    assert after[-1] == {**after[-1], "event": "stopped", "reason": "max_candidates"}
    starts_after = [line.split()[2] for line in log.read_text().splitlines()[len(lines_before):]
                    if line.startswith("start")]
    assert not done_before & set(starts_after), "a finished stage was evaluated again"
    assert len(starts_after) == len(set(starts_after))
    in_flight = {(e["id"], e["stage"]) for e in before if e["event"] == "submitted"}
    in_flight -= {(e["id"], e["stage"]) for e in before if e["event"] == "stage_done"}
    assert in_flight
    for cid, stage in in_flight:  # interrupted stages ran again, once
        assert starts_after.count(f"run/{cid}/{stage}") == 1
    stages = Counter((e["id"], e["stage"]) for e in after if e["event"] == "stage_done")
    assert sum(stages.values()) == len({(e["id"], e["stage"]) for e in after
                                        if e["event"] == "submitted"})
    assert "stopped (max_candidates)" in second.stdout
    json.dumps(after)  # the journal stays plain JSON


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
