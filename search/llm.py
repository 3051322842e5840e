"""An LLM client for any OpenAI-compatible endpoint, with retries, a budget and a transcript.

The `openai` package does the HTTP; its own retries are switched off so that this module owns
the policy: exponential backoff with jitter on rate limits (429), server errors (5xx),
timeouts and connection errors, honouring Retry-After; after the last retry a clean
EndpointDown. Every call is written to the run's transcript twice: the request before it is
sent and the response (or failure) after, so a killed run still shows what it asked.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from linarch.search.config import LLMConfig
from linarch.search.jsonl import JsonlWriter, read_jsonl
from linarch.search.ledger import CostLedger, LLMError
from linarch.search.templates import Message, RenderedPrompt

_RETRY_STATUS = frozenset({408, 409, 429})
_tags: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "llm_tags", default=None
)


class EndpointDown(LLMError):
    """The endpoint kept failing (rate limits, 5xx, timeouts, refused connections)."""


class RequestRejected(LLMError):
    """The endpoint refused the request itself (400, 401, 403, 404...): retrying cannot help."""


@dataclass(frozen=True)
class Attempt:
    """One failed try: what went wrong and how long the client waited before the next."""

    error: str
    status: int | None
    delay_s: float


@dataclass(frozen=True)
class Completion:
    call_id: str
    role: str
    model: str
    text: str  # "" when the model answered nothing
    finish_reason: str
    input_tokens: int
    output_tokens: int
    usage_reported: bool  # False: the endpoint sent no usage, tokens are estimated
    cost_usd: float
    latency_s: float
    failed_attempts: tuple[Attempt, ...]
    template: str
    template_version: str


@contextlib.contextmanager
def tagged(**tags: Any) -> Iterator[None]:
    """Label every call made inside the block in the transcript (e.g. candidate="c0007")."""
    token = _tags.set({**(_tags.get() or {}), **tags})
    try:
        yield
    finally:
        _tags.reset(token)


class LLMClient:
    """Chat completions with per-role models, a cost ledger and a JSONL transcript."""

    def __init__(
        self,
        config: LLMConfig,
        transcript: Path | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.config = config
        self.ledger = CostLedger(config.prices, config.budget_usd)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._transcript = JsonlWriter(transcript) if transcript is not None else None
        if transcript is not None:
            self.ledger.restore(read_jsonl(transcript))
        self._ids = itertools.count(self.ledger.total().calls + 1)
        self._client = openai.OpenAI(
            api_key=_api_key(config.api_key_env),
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=0,
        )

    def complete(
        self, role: str, prompt: RenderedPrompt, *, history: Sequence[Message] = (),
        model: str | None = None,
    ) -> Completion:
        """Send one prompt to the role's model (or `model`, one of the role's models chosen by
        the loop's bandit); raises BudgetExhausted, EndpointDown or RequestRejected."""
        self.ledger.ensure_available()
        model = model or self.config.model_for(role)
        messages = [m.to_dict() for m in prompt.messages(history)]
        call_id = f"{os.getpid()}-{next(self._ids)}"
        base = {
            "call_id": call_id,
            "role": role,
            "model": model,
            "template": prompt.name,
            "template_version": prompt.version,
            "template_digest": prompt.digest,
            "tags": dict(_tags.get() or {}),
        }
        self._write({**base, "event": "request", "messages": messages})
        start = time.monotonic()
        attempts: list[Attempt] = []
        try:
            response = self._send_with_retries(model, messages, attempts)
        except LLMError as err:
            self._write(
                {**base, "event": "failure", "error": str(err), "attempts": attempts,
                 "latency_s": time.monotonic() - start}
            )
            raise
        completion = self._account(base, response, messages, attempts, time.monotonic() - start)
        self._write(
            {**base, "event": "response", "text": completion.text,
             "finish_reason": completion.finish_reason, "input_tokens": completion.input_tokens,
             "output_tokens": completion.output_tokens,
             "usage_reported": completion.usage_reported, "cost_usd": completion.cost_usd,
             "latency_s": completion.latency_s, "attempts": attempts}
        )
        return completion

    def _send_with_retries(
        self, model: str, messages: list[dict[str, str]], attempts: list[Attempt]
    ) -> Any:
        cfg = self.config
        sampling = cfg.sampling_for(model)
        for attempt in range(cfg.max_retries + 1):
            try:
                return self._client.chat.completions.create(
                    model=model,
                    messages=messages,  # type: ignore[arg-type]
                    **sampling,
                )
            except openai.APIStatusError as err:
                if err.status_code < 500 and err.status_code not in _RETRY_STATUS:
                    raise RequestRejected(
                        f"{cfg.base_url} refused the request: HTTP {err.status_code}: "
                        f"{_short(err.message)}"
                    ) from err
                error, status, hint = f"HTTP {err.status_code}", err.status_code, _retry_after(err)
            except openai.APITimeoutError:
                error, status, hint = f"timeout after {cfg.timeout_s}s", None, None
            except openai.APIConnectionError as err:
                error, status, hint = f"connection error: {_short(str(err))}", None, None
            if attempt == cfg.max_retries:
                attempts.append(Attempt(error, status, 0.0))
                break
            delay = self._backoff(attempt, hint)
            attempts.append(Attempt(error, status, delay))
            self._sleep(delay)
        raise EndpointDown(
            f"{cfg.base_url} failed {len(attempts)} time(s); last: {attempts[-1].error}"
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with equal jitter, at least the server's Retry-After, capped."""
        cfg = self.config
        ceiling = min(cfg.backoff_max_s, cfg.backoff_base_s * 2**attempt)
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, cfg.backoff_max_s)

    def _account(
        self,
        base: dict[str, Any],
        response: Any,
        messages: list[dict[str, str]],
        attempts: list[Attempt],
        latency: float,
    ) -> Completion:
        choices = getattr(response, "choices", None) or []
        message = choices[0].message if choices else None
        text = (message.content if message is not None else None) or ""
        finish = (choices[0].finish_reason if choices else None) or ""
        usage = getattr(response, "usage", None)
        if usage is not None and usage.prompt_tokens is not None:
            inp, out, reported = int(usage.prompt_tokens), int(usage.completion_tokens or 0), True
        else:  # no usage from the endpoint: a rough 4-characters-a-token estimate, flagged
            inp = sum(len(m["content"]) for m in messages) // 4
            out, reported = len(text) // 4, False
        cost = self.ledger.record(base["model"], base["role"], inp, out)
        return Completion(
            call_id=base["call_id"],
            role=base["role"],
            model=base["model"],
            text=text,
            finish_reason=str(finish),
            input_tokens=inp,
            output_tokens=out,
            usage_reported=reported,
            cost_usd=cost,
            latency_s=latency,
            failed_attempts=tuple(attempts),
            template=base["template"],
            template_version=base["template_version"],
        )

    def _write(self, record: dict[str, Any]) -> None:
        if self._transcript is not None:
            self._transcript.append({"t": time.time(), **record})


def _api_key(env_name: str) -> str:
    if not env_name:
        return "not-needed"  # local servers (vLLM, llama.cpp, Ollama) accept any key
    key = os.environ.get(env_name)
    if not key:
        raise LLMError(
            f"environment variable {env_name} (llm.api_key_env) is not set; set it, set "
            "api_key_env = \"\" for an endpoint that needs no key, or run without an LLM "
            "(an offline proposer and memory.analyze = false)"
        )
    return key


def _retry_after(err: openai.APIStatusError) -> float | None:
    value = err.response.headers.get("retry-after") if err.response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
