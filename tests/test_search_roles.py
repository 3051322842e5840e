"""Prompt templates, answer extraction, and the researcher / engineer / analyzer roles.

The roles talk to the scripted fake server through the real openai client; the compiler is
the toy one from linarch_testing.search_fakes (same diagnostic shape as linarch.check).
"""

from __future__ import annotations

import json

import pytest

from linarch.search.analyzer import Analyzer, parse_analysis
from linarch.search.cognition import MemoryEntry
from linarch.search.config import LLMConfig
from linarch.search.engineer import BuildFailure, Engineer
from linarch.search.extract import DraftFailure, extract_program
from linarch.search.jsonl import read_jsonl
from linarch.search.ledger import Price
from linarch.search.llm import LLMClient
from linarch.search.memory import LessonStore, Memory
from linarch.search.proposer import (
    LLMProposer,
    ProposalRequest,
    Proposer,
    RuntimeFailure,
    Sibling,
)
from linarch.search.records import Candidate, EvalResult, Profile
from linarch.search.researcher import Researcher
from linarch.search.schema import connect
from linarch.search.templates import TemplateError, available_templates, load_template
from linarch_testing.openai_server import FakeOpenAIServer, reply
from linarch_testing.search_fakes import toy_analyze, toy_check, toy_source

REFERENCE = "REFERENCE-TEXT: mixer NAME / state CLASS / path KIND"
GOOD = toy_source("Good", gate="scalar", paths=("memory", "fir 3"))
LEAKY = GOOD + "mean over time\n"


def _client(server, tmp_path=None):
    config = LLMConfig(base_url=server.base_url, api_key_env="", models={"default": "m"},
                       prices={"m": Price(0.5, 1.0)}, max_retries=0, timeout_s=5)
    return LLMClient(config, None if tmp_path is None else tmp_path / "t.jsonl")


def _candidate(cid, source, score, parents=(), analysis=""):
    a = toy_analyze(source)
    profile = Profile(a.name, a.structural_hash, a.flops_per_token, a.state_bytes,
                      a.transition_classes, a.num_paths)
    result = EvalResult(score, score - 0.01, score + 0.01, "better" if score > 0.01 else "tie",
                        {"mqar_acc": 0.8 + score}, (0, 1),
                        candidate_per_seed=(0.8 + score, 0.8 + score),
                        baseline_per_seed=(0.8, 0.8),
                        curves={"seed 0": ((100, 0.1), (200, 0.5 + score))})
    return Candidate(cid, source, f"motivation of {cid}", tuple(parents), 0, len(parents),
                     "llm", profile, result, 1, analysis=analysis)


def _fenced(source, motivation="Motivation: add a short FIR path for local patterns."):
    return f"{motivation}\n\n```lin\n{source}```\n"


def _request(parents, inspirations=(), memory=(), **kw):
    return ProposalRequest("c0009", 9, tuple(parents), tuple(inspirations), tuple(memory), **kw)


# ------------------------------------------------------------------------------ extraction


def test_extract_lin_block_and_motivation():
    ex = extract_program("Motivation: gate the memory.\nMore words.\n\n```lin\nmixer A\n```\nok")
    assert ex.ok and ex.source == "mixer A\n" and not ex.truncated
    assert ex.motivation == "gate the memory. More words."


def test_extract_prefers_the_last_lin_block_and_ignores_thinking():
    text = (
        "<think>maybe\n```lin\nmixer Draft\n```\n</think>\nFirst try:\n```lin\nmixer One\n```\n"
        "Better:\n```python\nimport torch\n```\n~~~lin\nmixer Two\n~~~\n"
    )
    ex = extract_program(text)
    assert ex.source == "mixer Two\n" and ex.blocks == 3


def test_extract_untagged_block_unless_python():
    assert extract_program("```\nmixer A\nstate delta\n```").source == "mixer A\nstate delta\n"
    ex = extract_program("```\nimport torch\nclass M(nn.Module):\n    pass\n```")
    assert ex.failure is DraftFailure.PYTHON


@pytest.mark.parametrize(
    ("answer", "failure"),
    [
        ("", DraftFailure.EMPTY),
        ("   \n", DraftFailure.EMPTY),
        ("```lin\n\n```", DraftFailure.EMPTY),
        ("I would add a gate, it should help.", DraftFailure.NO_BLOCK),
        ("```python\nx = 1\n```", DraftFailure.PYTHON),
        ("import torch\nclass Mixer(torch.nn.Module):\n    pass", DraftFailure.PYTHON),
        ("<think>still thinking ```lin\nmixer A\n```", DraftFailure.EMPTY),
    ],
)
def test_extract_failures(answer, failure):
    ex = extract_program(answer)
    assert ex.failure is failure and ex.source is None


def test_extract_unclosed_block_is_marked_truncated():
    ex = extract_program("Motivation: x\n```lin\nmixer A\nstate delta")
    assert ex.source == "mixer A\nstate delta\n" and ex.truncated


# ------------------------------------------------------------------------------ templates


def test_every_template_loads_with_a_version():
    names = available_templates()
    assert {"researcher.md", "engineer_repair.md", "analyzer.md"} <= set(names)
    for name in names:
        t = load_template(name)
        assert t.version.startswith(name.removesuffix(".md") + "/")
        assert len(t.digest) == 12


def test_missing_template_variable_is_an_error():
    with pytest.raises(TemplateError, match="language_reference"):
        load_template("researcher.md").render(objective="x", parents=[], inspirations=[],
                                              task_card="", siblings=[], feedback=[],
                                              memory=[])


def test_template_without_version_is_refused(tmp_path):
    blocks = "{% block system %}{% endblock %}{% block user %}{% endblock %}"
    (tmp_path / "bad.md").write_text(blocks)
    with pytest.raises(TemplateError, match="version"):
        load_template("bad.md", tmp_path)


# ------------------------------------------------------------------------------ researcher


def test_researcher_prompt_carries_parents_inspirations_memory_and_reference(tmp_path):
    parent = _candidate("c0001", GOOD, 0.02, analysis="the gate helped recall")
    inspiration = _candidate("c0002", toy_source("Other", state="dplr"), 0.01)
    memory = [MemoryEntry("delta-rule", "cognition", "The delta rule", "erase then write",
                          "Schlag et al. 2021", ("delta",))]
    with FakeOpenAIServer([reply(_fenced(GOOD))]) as srv:
        researcher = Researcher(_client(srv, tmp_path), REFERENCE, "beat DeltaNet on mqar")
        draft = researcher.draft(_request(
            [parent], [inspiration], memory, task_card="- Measured: TASK-CARD-TEXT.",
            siblings=(Sibling("c0004", "add a gate", "not evaluated (duplicate): like c0002"),
                      Sibling("c0005", "a long FIR", "failed: mqar: timeout: killed after 900s")),
            feedback=("c0006: already tried: the same program as c0003",)))
    prompt = srv.user_prompts()[0]
    for needle in (REFERENCE, "beat DeltaNet on mqar", "c0001", "state delta", "c0002",
                   "state dplr", "The delta rule", "Schlag et al. 2021",
                   "the gate helped recall", "0.0200", "# The task\n- Measured: TASK-CARD-TEXT.",
                   "Per seed: this program 0.820, 0.820; the baseline 0.800, 0.800",
                   "Curve (seed 0): 100: 0.100, 200: 0.520",
                   "- c0004: not evaluated (duplicate): like c0002. Idea: add a gate",
                   "- c0005: failed: mqar: timeout: killed after 900s",
                   "# Your previous attempts were not evaluated",
                   "- c0006: already tried: the same program as c0003"):
        assert needle in prompt, needle
    assert draft.extraction.source == GOOD
    assert draft.extraction.motivation.startswith("add a short FIR path")
    request = read_jsonl(tmp_path / "t.jsonl")[0]
    assert request["template"] == "researcher.md"
    assert request["template_version"] == load_template("researcher.md").version


# ------------------------------------------------------------------------------ engineer


def _draft(srv, answer, tmp_path=None):
    srv.push(reply(answer))
    client = _client(srv, tmp_path)
    researcher = Researcher(client, REFERENCE, "objective")
    return client, researcher.draft(_request([_candidate("p", GOOD, 0.0)]))


def test_engineer_accepts_a_valid_program_without_llm_calls():
    with FakeOpenAIServer() as srv:
        client, draft = _draft(srv, _fenced(GOOD))
        build = Engineer(client, toy_check, REFERENCE, max_repairs=3).build(draft)
    assert build.valid and build.repairs == 0 and build.failure is None
    assert build.source == GOOD and len(srv.requests) == 1


def test_engineer_repairs_from_json_diagnostics(tmp_path):
    with FakeOpenAIServer() as srv:
        client, draft = _draft(srv, _fenced(LEAKY), tmp_path)
        srv.push(reply(_fenced(GOOD)))
        build = Engineer(client, toy_check, REFERENCE, max_repairs=3).build(draft)
    assert build.valid and build.repairs == 1 and build.source == GOOD
    assert [s.diagnostics[0]["code"] for s in build.steps[:1]] == ["LA201"]
    repair_prompt = srv.user_prompts()[1]
    sent = json.loads(repair_prompt.split("```json\n", 1)[1].split("\n```", 1)[0])
    assert sent[0]["code"] == "LA201" and sent[0]["line"] == 8
    assert "mean over time" in repair_prompt and REFERENCE in repair_prompt
    assert "add a short FIR path" in repair_prompt  # the design the program is meant to express
    versions = [r["template_version"] for r in read_jsonl(tmp_path / "t.jsonl")
                if r["event"] == "request"]
    assert versions == [load_template("researcher.md").version,
                        load_template("engineer_repair.md").version]


def test_engineer_sends_python_and_empty_answers_back_for_repair():
    with FakeOpenAIServer() as srv:
        client, draft = _draft(srv, "```python\nimport torch\nclass M(torch.nn.Module): pass\n```")
        srv.push(reply(""), reply(_fenced(GOOD)))
        build = Engineer(client, toy_check, REFERENCE, max_repairs=3).build(draft)
    assert build.valid and build.repairs == 2
    codes = [s.diagnostics[0]["code"] for s in build.steps[:2]]
    assert codes == ["LS002", "LS003"]
    assert "import torch" in srv.user_prompts()[1]  # the model sees what it answered


def test_engineer_gives_up_after_max_repairs():
    with FakeOpenAIServer() as srv:
        client, draft = _draft(srv, "no code today")
        srv.push(reply("still none"), reply("```lin\nmixer Broken\nwhat is this\n```"))
        build = Engineer(client, toy_check, REFERENCE, max_repairs=2).build(draft)
    assert not build.valid and build.repairs == 2
    assert build.failure is BuildFailure.INVALID
    assert build.diagnostics[0]["code"] == "LA101"
    assert [s.diagnostics[0]["code"] for s in build.steps] == ["LS001", "LS001", "LA101"]
    assert build.cost_usd == pytest.approx(2 * (0.5 * 0.12 + 1.0 * 0.08))


def test_engineer_flags_truncated_answers():
    with FakeOpenAIServer() as srv:
        client, draft = _draft(srv, "```lin\nmixer Cut\nstate del")
        build = Engineer(client, toy_check, REFERENCE, max_repairs=0).build(draft)
    codes = {d["code"] for d in build.steps[0].diagnostics}
    assert codes == {"LA300"}
    assert not build.valid and build.failure is BuildFailure.INVALID


def test_engineer_records_a_compiler_crash_without_repairing():
    def crashing_check(source):
        raise KeyError("compiler bug")

    with FakeOpenAIServer() as srv:
        client, draft = _draft(srv, _fenced(GOOD))
        build = Engineer(client, crashing_check, REFERENCE, max_repairs=3).build(draft)
    assert build.failure is BuildFailure.CHECK_CRASHED and build.repairs == 0
    assert "KeyError" in build.diagnostics[0]["message"]
    assert "compiler bug" in build.diagnostics[0]["hint"]
    assert len(srv.requests) == 1


def test_llm_proposer_is_a_proposer_and_sums_costs():
    with FakeOpenAIServer([reply(_fenced(LEAKY)), reply(_fenced(GOOD))]) as srv:
        client = _client(srv)
        proposer = LLMProposer(Researcher(client, REFERENCE, "o"),
                               Engineer(client, toy_check, REFERENCE, 2))
        assert isinstance(proposer, Proposer)
        proposal = proposer.propose(_request([_candidate("p", GOOD, 0.0)]))
    assert proposal.source == GOOD and proposal.failure is None and proposal.repairs == 1
    assert proposal.cost_usd == pytest.approx(client.ledger.total().usd)
    assert proposal.prompt_versions == ("researcher/3", "engineer_repair/1")


# ------------------------------------------------------------------------------ analyzer


def test_parse_analysis_sections():
    text, lessons = parse_analysis(
        "ANALYSIS:\nThe gate helped.\nIt is significant.\n\nLESSONS:\n"
        "- [gating, Delta] a scalar gate on the delta rule helps recall\n"
        "* no tags here\n- none\n"
    )
    assert text == "The gate helped. It is significant."
    assert lessons == [(("gating", "delta"), "a scalar gate on the delta rule helps recall"),
                       ((), "no tags here")]
    assert parse_analysis("Just prose.") == ("Just prose.", [])


def test_analyzer_reads_results_and_stores_lessons(tmp_path):
    parent = _candidate("c0001", GOOD, 0.02)
    child = _candidate("c0002", GOOD.replace("gate scalar", "gate diagonal"), 0.05, ["c0001"])
    baseline = _candidate("s000", toy_source(), 0.0)
    conn = connect(tmp_path / "store.sqlite")
    memory = Memory([], LessonStore(conn, "run-a"))
    answer = ("ANALYSIS: The diagonal gate raised the score by 0.03; the interval excludes 0.\n"
              "LESSONS:\n- [gating] per-channel gates beat scalar gates on this preset\n")
    with FakeOpenAIServer([reply(answer)]) as srv:
        report = Analyzer(_client(srv), stages_total=2).analyze(child, parent, baseline)
    for lesson in report.lessons:  # the loop files them, in its own thread
        memory.remember(lesson)
    prompt = srv.user_prompts()[0]
    assert "-gate scalar" in prompt and "+gate diagonal" in prompt  # the diff parent -> child
    assert "0.0500" in prompt and "0.0200" in prompt and "s000" in prompt
    assert report.text.startswith("The diagonal gate raised")
    assert [lesson.text for lesson in report.lessons] == [
        "per-channel gates beat scalar gates on this preset"]
    assert report.lessons[0].score_delta == pytest.approx(0.03)
    stored = memory.retrieve("per-channel gates", k=3)
    assert stored[0].kind == "lesson" and stored[0].source.startswith("experiment run-a/c0002")


def test_engineer_repairs_a_runtime_failure_from_its_log_tail(tmp_path):
    failure = RuntimeFailure("c0007", GOOD, "gate the memory", "numerics", "error",
                             "ValueError: chunked and recurrent forms differ by 3.1e-02")
    with FakeOpenAIServer([reply(_fenced(LEAKY)), reply(_fenced(GOOD))]) as srv:
        client = _client(srv, tmp_path)
        build = Engineer(client, toy_check, REFERENCE, max_repairs=2).repair_runtime(failure)
    first = srv.user_prompts()[0]
    assert "failed in the `numerics` stage (error)" in first
    assert "chunked and recurrent forms differ by 3.1e-02" in first and GOOD.strip() in first
    assert "gate the memory" in first and REFERENCE in first
    assert build.valid and build.source == GOOD
    assert build.repairs == 2  # the runtime repair, then one compile repair (LA201)
    versions = [r["template_version"] for r in read_jsonl(tmp_path / "t.jsonl")
                if r["event"] == "request"]
    assert versions == ["engineer_runtime/1", "engineer_repair/1"]


def test_a_compiler_that_does_not_finish_is_a_repairable_diagnostic():
    """The guard stopped the check (a tower of powers): the model is told, and repairs it."""
    from linarch.search.guard import GuardTimeout

    def check(source):
        if "2 ** 2 ** 2" in source:
            raise GuardTimeout("the front end did not finish within 30s; worker killed")
        return toy_check(source)

    with FakeOpenAIServer() as srv:
        client, draft = _draft(srv, _fenced(GOOD + "# scale 2 ** 2 ** 2\n"))
        srv.push(reply(_fenced(GOOD)))
        build = Engineer(client, check, REFERENCE, max_repairs=2).build(draft)
    assert build.valid and build.repairs == 1
    assert build.steps[0].diagnostics[0]["code"] == "LS901"
    assert "did not finish" in srv.user_prompts()[1]


def test_a_refused_request_is_a_failed_proposal_not_an_error():
    from linarch_testing.openai_server import status

    with FakeOpenAIServer([status(400, "temperature is not supported with this model")]) as srv:
        client = _client(srv)
        proposer = LLMProposer(Researcher(client, REFERENCE, "o"),
                               Engineer(client, toy_check, REFERENCE, 2))
        proposal = proposer.propose(_request([_candidate("p", GOOD, 0.0)]))
    assert proposal.source is None and proposal.failure == "request_rejected"
    assert "temperature is not supported" in proposal.motivation


def test_analyzer_reads_a_failed_experiment(tmp_path):
    parent = _candidate("c0001", GOOD, 0.02)
    child = _candidate("c0002", GOOD.replace("gate scalar", "gate diagonal"), 0.0, ["c0001"])
    from dataclasses import replace

    child = replace(child, result=None, outcome="timeout",
                    failure="mqar: timeout: killed after 901.0s (limit 900s)")
    with FakeOpenAIServer([reply("ANALYSIS: too slow.\nLESSONS:\n- none")]) as srv:
        report = Analyzer(_client(srv), stages_total=3).analyze(child, parent, None, "timeout")
    prompt = srv.user_prompts()[0]
    assert "No score: the experiment failed (timeout)" in prompt
    assert "Failure: mqar: timeout: killed after 901.0s" in prompt
    assert "the last stage ended timeout" in prompt
    assert report.text == "too slow." and report.lessons == ()
