"""A scripted OpenAI-compatible chat server on 127.0.0.1, for driving the real `openai` client.

The server answers POST /v1/chat/completions with the next scripted reply: a text (with usage
tokens), an HTTP error status (429 with Retry-After, 500...), a reply delayed past the
client's timeout, or a dropped connection. Every request body is kept for assertions.

    with FakeOpenAIServer([reply("hello"), status(429), reply("```lin ...```")]) as server:
        client = LLMClient(LLMConfig(base_url=server.base_url, api_key_env=""))
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Scripted:
    kind: str  # "text" | "status" | "drop"
    content: str | None = ""
    status: int = 200
    delay_s: float = 0.0
    prompt_tokens: int | None = 120
    completion_tokens: int | None = 80
    retry_after: float | None = None


def reply(
    content: str | None,
    *,
    prompt_tokens: int | None = 120,
    completion_tokens: int | None = 80,
    delay_s: float = 0.0,
) -> Scripted:
    """A 200 answer; prompt_tokens=None sends no usage block."""
    return Scripted("text", content, 200, delay_s, prompt_tokens, completion_tokens)


def status(code: int, message: str = "scripted error", retry_after: float | None = None):
    return Scripted("status", message, code, retry_after=retry_after)


def slow(delay_s: float, content: str = "too late") -> Scripted:
    return reply(content, delay_s=delay_s)


def drop() -> Scripted:
    """Close the connection without answering (the client sees a connection error)."""
    return Scripted("drop")


class FakeOpenAIServer:
    """Answers from `script` in order; or, with `responder`, whatever it returns for a body."""

    def __init__(
        self,
        script: Iterable[Scripted] = (),
        responder: Callable[[dict[str, Any]], Scripted] | None = None,
    ):
        self._script: deque[Scripted] = deque(script)
        self._responder = responder
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # lower-cased names
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._script)

    def push(self, *replies: Scripted) -> None:
        with self._lock:
            self._script.extend(replies)

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def user_prompts(self) -> list[str]:
        """The last user message of every request received, in order."""
        return [r["messages"][-1]["content"] for r in self.requests]

    def _next(self, body: dict[str, Any], headers: dict[str, str]) -> Scripted | None:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            if self._responder is not None:
                return self._responder(body)
            return self._script.popleft() if self._script else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                step = server._next(body, headers)
                if step is None:
                    self._send(500, {"error": {"message": "fake server: script exhausted"}})
                    return
                if step.delay_s:
                    time.sleep(step.delay_s)
                if step.kind == "drop":
                    self.close_connection = True
                    return
                if step.kind == "status":
                    headers = {}
                    if step.retry_after is not None:
                        headers["Retry-After"] = str(step.retry_after)
                    self._send(step.status, {"error": {"message": step.content}}, headers)
                    return
                self._send(200, _completion(body, step))

            def _send(self, code: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer

        return Handler


def _completion(body: dict[str, Any], step: Scripted) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"chatcmpl-fake-{int(time.time() * 1e6)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": step.content},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
    }
    if step.prompt_tokens is not None:
        out["usage"] = {
            "prompt_tokens": step.prompt_tokens,
            "completion_tokens": step.completion_tokens or 0,
            "total_tokens": step.prompt_tokens + (step.completion_tokens or 0),
        }
    return out
