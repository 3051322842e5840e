"""The LLM path of the loop against the real HTTP fake server: a runtime failure goes back
to the engineer with its log tail, the analyzer hears about failures, a refused request
fails one proposal (not the run), several models per role share the work by bandit, request
options are sent only when set, and the exploit from the issue cannot hang the search."""

from __future__ import annotations

import itertools
import time

from test_search_loop import SEED, VARIANTS, check_journal, config_text, llm_config

from linarch.api import example_path
from linarch.search.jsonl import read_jsonl
from linarch.search.loop import SearchLoop, SeedProgram
from linarch.search.rundir import RunDir
from linarch.search.session import build_components
from linarch_testing.openai_server import FakeOpenAIServer, reply, status
from linarch_testing.search_fakes import InlineExecutor, toy_source


def run_loop(tmp_path, text, seeds=(SEED,)):
    run = RunDir.create(tmp_path / "run", text)
    config = run.config()
    comps = build_components(config, run)
    loop = SearchLoop(config, run, comps, InlineExecutor(2), seed_programs=list(seeds))
    try:
        return loop, loop.run()
    finally:
        comps.frontend.close()


def role(body) -> str:
    system = body["messages"][0]["content"]
    for name, marker in (("researcher", "You are a researcher"),
                         ("repair", "You are the engineer who makes linarch programs compile"),
                         ("runtime", "You are the engineer who makes linarch programs run"),
                         ("analyzer", "You are the analyst")):
        if marker in system:
            return name
    raise AssertionError(system[:80])


def test_a_runtime_failure_goes_back_to_the_engineer_with_its_log_tail(tmp_path):
    """c0001 has a `value` path, which the evaluation refuses (an error in the worker): the
    engineer gets its stage, outcome and log tail, and its answer is a new candidate with
    repair_of = c0001; the analyzer is told that c0001 failed."""
    failing = toy_source("Fails", paths=("memory", "value"))
    fixed = toy_source("Fixed", paths=("memory", "fir 3"))
    prompts: dict[str, list[str]] = {}
    drafts = iter([failing, *VARIANTS])

    def respond(body):
        kind = role(body)
        prompts.setdefault(kind, []).append(body["messages"][-1]["content"])
        if kind == "researcher":
            return reply(f"Motivation: a new path.\n```lin\n{next(drafts)}```")
        if kind == "runtime":
            return reply(f"```lin\n{fixed}```")
        return reply("ANALYSIS: it failed.\nLESSONS:\n- [paths] value paths break the run")

    text = llm_config(None, 4).replace("toy_evaluate\"", "toy_evaluate_crashing\"")
    with FakeOpenAIServer(responder=respond) as srv:
        loop, summary = run_loop(tmp_path, text.replace("BASE_URL", srv.base_url))
    events = read_jsonl(loop.run_dir.journal)
    check_journal(events)
    repairs = [e for e in events if e["event"] == "proposed" and e.get("repair_of")]
    assert repairs and repairs[0]["repair_of"] == "c0001" and repairs[0]["source"] == fixed
    assert repairs[0]["prompt_versions"] == ["engineer_runtime/1"]
    assert repairs[0]["parents"] == ["s000"]  # the failed candidate's parents
    runtime = prompts["runtime"][0]
    assert "Candidate c0001 compiled but failed in the `smoke` stage (error)" in runtime
    assert "toy evaluation refuses value paths" in runtime and "path value" in runtime
    assert loop.state.archive.candidates["c0001"].outcome == "error"
    assert loop.state.archive.candidates[repairs[0]["id"]].result is not None
    analyses = [p for p in prompts["analyzer"] if "# Experiment c0001" in p]
    assert analyses and "No score: the experiment failed" in analyses[0]
    assert summary.candidates == 4 and summary.reason == "max_candidates"


def test_a_refused_request_fails_one_proposal_and_only_a_run_of_them_stops(tmp_path):
    fresh = iter(VARIANTS)
    calls = itertools.count()

    def respond(body):
        if role(body) == "researcher" and next(calls) in (0, 2):
            return status(400, "max_tokens is not supported with this model")
        return reply(f"```lin\n{next(fresh)}```")

    with FakeOpenAIServer(responder=respond) as srv:
        loop, summary = run_loop(tmp_path / "a", llm_config(None, 3).replace(
            "BASE_URL", srv.base_url))
    assert summary.reason == "max_candidates" and summary.candidates == 3
    reasons = [e["reason"] for e in read_jsonl(loop.run_dir.journal) if e["event"] == "rejected"]
    assert reasons == ["request_rejected", "request_rejected"]
    with FakeOpenAIServer(responder=lambda body: status(401, "bad key")) as srv:
        loop, summary = run_loop(tmp_path / "b", llm_config(None, 3).replace(
            "BASE_URL", srv.base_url))
    assert summary.reason == "request_rejected" and summary.proposals == 5
    assert len(srv.requests) == 5  # llm.max_consecutive_rejections, then a clean stop


def test_several_models_for_a_role_are_chosen_by_a_bandit(tmp_path):
    """researcher = ["good", "bad"]: "bad" answers with programs that do not compile, so after
    trying both the bandit sends most proposals to "good"; each request carries its model's
    own options (and nothing a model was not configured with)."""
    fresh = iter(VARIANTS)

    def respond(body):
        if body["model"] == "bad" and role(body) == "researcher":
            return reply("```lin\nmixer Broken\nnot a statement\n```")
        return reply(f"```lin\n{next(fresh)}```")

    text = llm_config(None, 6).replace('default = "fake-model"', 'default = "fake-model"\n'
                                       'researcher = ["good", "bad"]')
    text = text.replace("[llm.prices.fake-model]", "[llm.options.bad]\n"
                        "max_completion_tokens = 64\n[llm.prices.fake-model]")
    text = text.replace("max_repairs = 3", "max_repairs = 0") if "max_repairs" in text else \
        text + "\n[engineer]\nmax_repairs = 0\n"
    with FakeOpenAIServer(responder=respond) as srv:
        loop, summary = run_loop(tmp_path, text.replace("BASE_URL", srv.base_url))
    researcher = [r for r in srv.requests if role(r) == "researcher"]
    models = [r["model"] for r in researcher]
    assert models[:2] == ["good", "bad"]  # each tried once, in the configured order
    assert models.count("good") > models.count("bad")
    for r in researcher:
        assert "temperature" not in r and "max_tokens" not in r
        assert r.get("max_completion_tokens") == (64 if r["model"] == "bad" else None)
    started = [e for e in read_jsonl(loop.run_dir.journal) if e["event"] == "proposal_started"]
    assert [e["models"]["researcher"] for e in started] == models
    summary_by_model = loop.state.bandit.summary()["researcher"]
    assert summary_by_model["bad"][1] == 0.0


def test_the_exploit_cannot_hang_the_search(tmp_path):
    """The issue's exploit through the fake LLM server and a check that never finishes on
    `2 ** 2 ** 2 ** 2 ** 2 ** 2` (the real one refuses it at once since constant folding is
    bounded, LA118; `check_hanging_on_towers` stands in for the next program that hangs a
    compiler): the guard stops it at its deadline, the engineer is told (LS901), and the search
    goes on to evaluate a good program."""
    delta = example_path("deltanet").read_text()
    exploit = delta.replace("o = S @ q * dk ** -0.5",
                            "o = S @ q * dk ** -0.5 * 2 ** 2 ** 2 ** 2 ** 2 ** 2")
    good = example_path("gated_deltanet").read_text()
    answers = iter([exploit, exploit, good])
    prompts = []

    def respond(body):
        prompts.append(body["messages"][-1]["content"])
        return reply(f"Motivation: scale it.\n```lin\n{next(answers, good)}```")

    text = config_text(max_candidates=1, proposer="llm", analyze="false", extra="""
[llm]
base_url = "BASE_URL"
api_key_env = ""
[llm.models]
default = "fake-model"
[engineer]
max_repairs = 1
[guard]
time_limit_s = 8
""").replace("linarch_testing.search_fakes:toy_check",
              "linarch_testing.search_fakes:check_hanging_on_towers").replace(
        "linarch_testing.search_fakes:toy_analyze", "linarch:analyze").replace(
        "linarch_testing.search_fakes:toy_evaluate", "linarch_testing.search_fakes:cost_evaluate"
    ).replace('vet = "linarch_testing.search_fakes:toy_vet"', 'vet = ""')
    start = time.monotonic()
    with FakeOpenAIServer(responder=respond) as srv:
        loop, summary = run_loop(tmp_path, text.replace("BASE_URL", srv.base_url),
                                 seeds=[SeedProgram("deltanet", delta)])
    assert time.monotonic() - start < 120
    events = read_jsonl(loop.run_dir.journal)
    rejected = {e["id"]: e for e in events if e["event"] == "rejected"}
    proposed = {e["id"]: e for e in events if e["event"] == "proposed"}
    assert rejected["c0001"]["reason"] == "invalid"
    assert proposed["c0001"]["diagnostics"][0]["code"] == "LS901"
    assert "did not finish" in prompts[1]  # the engineer was told
    assert summary.candidates == 1 and loop.state.archive.candidates["c0002"].result
