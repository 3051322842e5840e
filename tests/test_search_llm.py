"""The LLM client, driven through the real `openai` package against a scripted HTTP server."""

from __future__ import annotations

import json

import pytest

from linarch.search.config import LLMConfig, Sampling
from linarch.search.jsonl import read_jsonl
from linarch.search.ledger import BudgetExhausted, LLMError, Price
from linarch.search.llm import EndpointDown, LLMClient, RequestRejected, tagged
from linarch.search.templates import RenderedPrompt
from linarch_testing.openai_server import FakeOpenAIServer, drop, reply, slow, status

PROMPT = RenderedPrompt("unit.md", "unit/1", "0123456789ab", "be brief", "say hello")


def _config(server: FakeOpenAIServer, **kw) -> LLMConfig:
    base = dict(
        base_url=server.base_url,
        api_key_env="",
        models={"default": "small-model", "analyzer": "big-model"},
        prices={"small-model": Price(1.0, 2.0), "big-model": Price(10.0, 20.0)},
        timeout_s=2.0,
        max_retries=3,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
    )
    base.update(kw)
    return LLMConfig(**base)


def test_completion_tokens_cost_and_transcript(tmp_path):
    with FakeOpenAIServer([reply("hello", prompt_tokens=1000, completion_tokens=500)]) as srv:
        client = LLMClient(_config(srv), tmp_path / "transcript.jsonl")
        with tagged(candidate="c0001"):
            out = client.complete("researcher", PROMPT)
    assert out.text == "hello"
    assert (out.input_tokens, out.output_tokens, out.usage_reported) == (1000, 500, True)
    assert out.cost_usd == pytest.approx(1.0 * 1 + 2.0 * 0.5)
    assert out.model == "small-model" and out.failed_attempts == ()
    body = srv.requests[0]
    assert body["model"] == "small-model"
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "say hello"},
    ]
    lines = read_jsonl(tmp_path / "transcript.jsonl")
    assert [r["event"] for r in lines] == ["request", "response"]
    request, response = lines
    assert request["messages"][1]["content"] == "say hello"
    assert request["template_version"] == "unit/1" and request["template_digest"] == "0123456789ab"
    assert response["text"] == "hello" and response["cost_usd"] == pytest.approx(2.0)
    assert response["tags"] == {"candidate": "c0001"} and response["call_id"] == out.call_id


def test_model_per_role():
    with FakeOpenAIServer([reply("a"), reply("b")]) as srv:
        client = LLMClient(_config(srv), None)
        client.complete("researcher", PROMPT)
        client.complete("analyzer", PROMPT)
    assert [r["model"] for r in srv.requests] == ["small-model", "big-model"]
    by_model = client.ledger.by_model()
    assert by_model["big-model"].usd == pytest.approx(10 * 0.12 + 20 * 0.08)
    assert client.ledger.by_role()["analyzer"].calls == 1


def test_retries_rate_limit_server_error_timeout_and_dropped_connection(tmp_path):
    script = [status(429, retry_after=0.03), status(500), slow(1.0), drop(), reply("finally")]
    with FakeOpenAIServer(script) as srv:
        client = LLMClient(_config(srv, max_retries=4, timeout_s=0.4), tmp_path / "t.jsonl")
        out = client.complete("researcher", PROMPT)
    assert out.text == "finally"
    errors = [a.error for a in out.failed_attempts]
    assert errors[0] == "HTTP 429" and errors[1] == "HTTP 500"
    assert errors[2].startswith("timeout") and errors[3].startswith("connection error")
    assert out.failed_attempts[0].delay_s >= 0.03  # Retry-After honoured (capped at 0.05)
    assert all(0 < a.delay_s <= 0.05 for a in out.failed_attempts)
    assert len(srv.requests) == 5
    response = read_jsonl(tmp_path / "t.jsonl")[-1]
    assert [a["status"] for a in response["attempts"]] == [429, 500, None, None]


def test_backoff_is_exponential_with_jitter():
    with FakeOpenAIServer([status(503)] * 5 + [reply("ok")]) as srv:
        delays: list[float] = []
        client = LLMClient(_config(srv, max_retries=5, backoff_base_s=0.001, backoff_max_s=1.0),
                           None, sleep=delays.append)
        client.complete("researcher", PROMPT)
    assert len(delays) == 5
    for attempt, d in enumerate(delays):
        ceiling = 0.001 * 2**attempt
        assert ceiling / 2 <= d <= ceiling  # equal jitter within each doubling


def test_endpoint_down_after_retries(tmp_path):
    with FakeOpenAIServer([status(500)] * 3) as srv:
        client = LLMClient(_config(srv, max_retries=2), tmp_path / "t.jsonl")
        with pytest.raises(EndpointDown, match="failed 3 time"):
            client.complete("researcher", PROMPT)
    assert len(srv.requests) == 3
    assert read_jsonl(tmp_path / "t.jsonl")[-1]["event"] == "failure"
    assert client.ledger.total().calls == 0


def test_connection_refused_is_endpoint_down():
    with FakeOpenAIServer() as srv:
        config = _config(srv, max_retries=1)
    client = LLMClient(config, None)  # the server is gone: nothing listens on that port
    with pytest.raises(EndpointDown, match="connection error"):
        client.complete("researcher", PROMPT)


def test_client_error_is_not_retried():
    with FakeOpenAIServer([status(400, "context too long"), reply("never")]) as srv:
        client = LLMClient(_config(srv), None)
        with pytest.raises(RequestRejected, match="HTTP 400: .*context too long"):
            client.complete("researcher", PROMPT)
    assert len(srv.requests) == 1


def test_budget_exhausted_stops_before_the_next_call(tmp_path):
    script = [reply("one", prompt_tokens=1000, completion_tokens=0)] * 3
    with FakeOpenAIServer(script) as srv:
        client = LLMClient(_config(srv, budget_usd=1.5), tmp_path / "t.jsonl")
        client.complete("researcher", PROMPT)  # $1.00
        client.complete("researcher", PROMPT)  # $2.00: over the cap, but already paid
        with pytest.raises(BudgetExhausted, match=r"spent \$2.0000 of \$1.5000"):
            client.complete("researcher", PROMPT)
        assert len(srv.requests) == 2
        # a new client on the same transcript (a resumed run) knows what was spent
        again = LLMClient(_config(srv, budget_usd=1.5), tmp_path / "t.jsonl")
        assert again.ledger.total().usd == pytest.approx(2.0)
        with pytest.raises(BudgetExhausted):
            again.complete("researcher", PROMPT)


def test_empty_answer_and_missing_usage():
    with FakeOpenAIServer([reply(None, prompt_tokens=None), reply("", prompt_tokens=7)]) as srv:
        client = LLMClient(_config(srv), None)
        first = client.complete("researcher", PROMPT)
        second = client.complete("researcher", PROMPT)
    assert first.text == "" and not first.usage_reported
    assert first.input_tokens == len("be brief" + "say hello") // 4
    assert second.text == "" and second.usage_reported and second.input_tokens == 7


def test_missing_api_key_env_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("LINARCH_TEST_KEY", raising=False)
    with pytest.raises(LLMError, match="LINARCH_TEST_KEY"):
        LLMClient(LLMConfig(base_url="http://127.0.0.1:9/v1", api_key_env="LINARCH_TEST_KEY"))


def test_api_key_is_sent(monkeypatch):
    monkeypatch.setenv("LINARCH_TEST_KEY", "sk-test-123")
    with FakeOpenAIServer([reply("ok")]) as srv:
        client = LLMClient(_config(srv, api_key_env="LINARCH_TEST_KEY"), None)
        client.complete("researcher", PROMPT)
    assert srv.headers[0]["authorization"] == "Bearer sk-test-123"


def test_transcript_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"event": "response", "model": "small-model", "role": "x",
                                "input_tokens": 1000, "output_tokens": 0, "cost_usd": 1.0})
                    + "\n" + '{"event": "resp')
    with FakeOpenAIServer([reply("ok")]) as srv:
        client = LLMClient(_config(srv), path)
        assert client.ledger.total().usd == pytest.approx(1.0)
        client.complete("researcher", PROMPT)
    events = [r["event"] for r in read_jsonl(path)]
    assert events == ["response", "request", "response"]


def test_request_options_are_sent_only_when_configured():
    """Reasoning models refuse `temperature` and `max_tokens`: nothing is sent unless set;
    `max_completion_tokens` is supported; a model's own [llm.options.MODEL] table is used
    whole for that model, and `model=` (the loop's bandit) picks one of a role's models."""
    with FakeOpenAIServer([reply("a"), reply("b"), reply("c")]) as srv:
        plain = LLMClient(_config(srv), None)
        plain.complete("researcher", PROMPT)
        tuned = LLMClient(_config(srv, temperature=0.3, max_tokens=500, options={
            "big-model": Sampling(max_completion_tokens=2000)}), None)
        tuned.complete("researcher", PROMPT)
        tuned.complete("researcher", PROMPT, model="big-model")
    first, second, third = srv.requests
    for key in ("temperature", "max_tokens", "max_completion_tokens"):
        assert key not in first
    assert (second["temperature"], second["max_tokens"]) == (0.3, 500)
    assert "max_completion_tokens" not in second
    assert third["model"] == "big-model" and third["max_completion_tokens"] == 2000
    assert "temperature" not in third and "max_tokens" not in third
