"""The front-end guard: compiler calls in a limited worker, so that no program can stop the
search: a call that hangs is killed at its deadline, one that eats memory at its limit, a
crash is reported, and the next call gets a fresh worker. The exploit from the issue
(`2 ** 2 ** 2 ** 2 ** 2 ** 2`) hung `linarch.check` until constant folding was bounded (now
LA118 at once); a check that still hangs on it (`check_hanging_on_towers`) stands in for the
next program that hangs a compiler."""

from __future__ import annotations

import time

import pytest

import linarch
from linarch.api import example_path
from linarch.search.frontend import FrontEnd
from linarch.search.guard import Guard, GuardFailure, GuardLimits, GuardTimeout, RemoteError
from linarch_testing import search_fakes as fakes

EXPLOIT = example_path("deltanet").read_text().replace(
    "o = S @ q * dk ** -0.5", "o = S @ q * dk ** -0.5 * 2 ** 2 ** 2 ** 2 ** 2 ** 2")


@pytest.fixture(scope="module")
def guard(tmp_path_factory):
    g = Guard(GuardLimits(time_s=8.0, memory_mb=1500), tmp_path_factory.mktemp("guard"))
    yield g.start()
    g.close()


def test_calls_return_json_values_and_remote_errors(guard):
    assert guard.call(fakes.add, 2, 3) == 5
    with pytest.raises(RemoteError, match="ValueError: boom") as err:
        guard.call(fakes.raise_value_error, "boom")
    assert err.value.kind == "ValueError"
    restarts = guard.restarts
    assert guard.call(fakes.add, 1, 1) == 2 and guard.restarts == restarts  # same worker


def test_the_exploit_is_stopped_at_the_deadline_and_the_next_call_works(guard):
    hanging = FrontEnd(fakes.check_hanging_on_towers, linarch.analyze, guard)
    start = time.monotonic()
    with pytest.raises(GuardTimeout, match="did not finish within 8s"):
        hanging.check(EXPLOIT)
    assert time.monotonic() - start < 30
    front = FrontEnd(linarch.check, linarch.analyze, guard)
    assert "LA118" in [d.code for d in front.check(EXPLOIT)]  # the real compiler: refused
    diagnostics = front.check(example_path("deltanet").read_text())
    assert [d for d in diagnostics if d.severity == "error"] == []
    profile = front.profile(example_path("gated_deltanet").read_text())
    assert profile.name == "GatedDeltaNet" and profile.wl_features


def test_memory_limit_and_crashes_kill_the_worker_not_the_search(guard):
    # a generous deadline per call: what must stop these is the memory limit or the death
    with pytest.raises(GuardFailure, match="memory"):
        guard.call(fakes.allocate_mb, 3000, time_s=120)
    with pytest.raises(GuardFailure, match="died"):
        guard.call(fakes.segfault, time_s=120)
    with pytest.raises(GuardFailure, match="died"):
        guard.call(fakes.exit_hard, 3, time_s=120)
    assert guard.call(fakes.add, 2, 2, time_s=120) == 4


def test_answers_are_json_and_secrets_stay_outside(guard, monkeypatch):
    with pytest.raises(RemoteError, match="cannot be sent as JSON"):
        guard.call(fakes.return_code_running_value)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-guard-secret")
    monkeypatch.setenv("MY_LLM_VAR", "sk-other-secret")
    with Guard(GuardLimits(time_s=60, hidden_env=("MY_LLM_VAR",))) as fresh:
        seen = fresh.call(fakes.environment_seen)
    assert "sk-guard-secret" not in seen["environ"] + seen["initial"]
    assert "sk-other-secret" not in seen["environ"] + seen["initial"]


def test_a_profile_in_the_guard_equals_one_in_process():
    """The two modes of FrontEnd give the same records."""
    source = example_path("kda").read_text()
    inline = FrontEnd(linarch.check, linarch.analyze)
    with Guard(GuardLimits(time_s=60)) as g:
        guarded = FrontEnd(linarch.check, linarch.analyze, g)
        assert guarded.profile(source) == inline.profile(source)
        assert [d.to_dict() for d in guarded.check(source)] == [
            d.to_dict() for d in inline.check(source)]


def test_the_loop_rejects_the_exploit_and_goes_on(tmp_path):
    """Whatever proposes it (here a scripted proposer, as a mutation could), the loop's own
    check of the exploit is stopped by the guard: rejected as check_timeout, for free."""
    from test_search_loop import ScriptedProposer, config_text

    from linarch.search.jsonl import read_jsonl
    from linarch.search.loop import Components, SearchLoop, SeedProgram
    from linarch.search.rundir import RunDir
    from linarch_testing.search_fakes import InlineExecutor

    delta = example_path("deltanet").read_text()
    proposer = ScriptedProposer([EXPLOIT, example_path("gated_deltanet").read_text()])
    run = RunDir.create(tmp_path / "run", config_text(max_candidates=1))
    with Guard(GuardLimits(time_s=8.0)) as g:
        front = FrontEnd(fakes.check_hanging_on_towers, linarch.analyze, g)
        comps = Components(proposer, fakes.check_hanging_on_towers, linarch.analyze,
                           fakes.cost_evaluate, frontend=front)
        start = time.monotonic()
        summary = SearchLoop(run.config(), run, comps, InlineExecutor(1),
                             seed_programs=[SeedProgram("deltanet", delta)]).run()
    assert time.monotonic() - start < 90
    assert summary.candidates == 1 and summary.reason == "max_candidates"
    assert summary.rejected == 1
    (rejected,) = [e for e in read_jsonl(run.journal) if e["event"] == "rejected"]
    assert rejected["id"] == "c0001" and rejected["reason"] == "check_timeout"
