"""The front end behind a wall: compiler calls in a long-lived worker, each with a deadline.

`check`, `analyze` and the mutation engine are pure Python on programs the search did not
write (an LLM's, a mutation's). They are fast, but not provably bounded: a constant such as
`2 ** 2 ** 2 ** 2 ** 2 ** 2` makes the shape and range analysis compute a number with 10^19728
digits. So the search never calls them in its own process: a Guard keeps one worker process
(process.py: scrubbed environment, own session, dies with the search) that answers calls one
at a time. A call that runs past `time_s` or makes the worker's memory pass `memory_mb` gets
the worker killed with everything it started, raises GuardTimeout or GuardFailure, and the next
call starts a fresh worker. A worker costs one interpreter start (the front end's imports and
first analysis, ~3 s) at the first call and after each kill, not per call.

Requests go in as pickles (a function reference and its arguments, built by the search);
answers come back as JSON (wire.py).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing.connection
import os
import pickle
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linarch.search import wire
from linarch.search.process import (
    Child,
    child_connections,
    death_text,
    die_with_parent,
    kill_tree,
    limit_address_space,
    log_tail,
    start_child,
    tree_rss_mb,
)


@dataclass(frozen=True)
class GuardLimits:
    time_s: float = 30.0  # per call
    memory_mb: int = 3000  # address space of the worker (RLIMIT_AS) and its resident size
    startup_s: float = 120.0  # to start the worker and warm the front end up
    hidden_env: tuple[str, ...] = ()


class GuardError(RuntimeError):
    """A front-end call did not return a value."""


class GuardTimeout(GuardError):
    """The call ran past the time limit; the worker was killed."""


class GuardFailure(GuardError):
    """The worker died, ran out of memory, or did not start."""


class RemoteError(GuardError):
    """The called function raised; `kind` is the exception's type name, the message holds the
    worker's traceback."""

    def __init__(self, kind: str, text: str):
        super().__init__(text)
        self.kind = kind


class Guard:
    """Calls functions in a guarded worker process; thread-safe (one call at a time)."""

    def __init__(self, limits: GuardLimits = GuardLimits(), log_dir: Path | None = None):
        self.limits = limits
        self._log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.gettempdir())
        self._lock = threading.Lock()
        self._child: Child | None = None
        self._log_path: Path | None = None
        self.restarts = 0

    def call(self, fn: Callable[..., Any], *args: Any, time_s: float | None = None) -> Any:
        """fn(*args) in the worker: its JSON-decoded value, or GuardTimeout / GuardFailure /
        RemoteError."""
        with self._lock:
            child = self._ready()
            try:
                child.outbox.send_bytes(pickle.dumps((fn, args)))
            except OSError as err:
                self._discard()
                raise GuardFailure(f"the front-end worker is gone: {err}") from err
            message = self._answer(child, self.limits.time_s if time_s is None else time_s)
        kind = message.get("kind")
        if kind == "ok":
            return wire.decode(message.get("value"))
        if kind == "oom":
            with self._lock:
                self._discard()
            raise GuardFailure(f"the front end ran out of memory (limit "
                               f"{self.limits.memory_mb} MB): {message.get('text', '')[-500:]}")
        raise RemoteError(str(message.get("type", "Exception")), str(message.get("text", "")))

    def start(self) -> Guard:
        """Start (and warm) the worker now rather than at the first call."""
        with self._lock:
            self._ready()
        return self

    def close(self) -> None:
        with self._lock:
            self._discard()

    def __enter__(self) -> Guard:
        return self

    def __del__(self) -> None:  # a forgotten guard must not leave its worker behind
        child = getattr(self, "_child", None)
        if child is not None:
            with contextlib.suppress(Exception):  # also at interpreter exit, modules half gone
                os.killpg(child.pid, signal.SIGKILL)

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _ready(self) -> Child:
        if self._child is not None and self._child.alive():
            return self._child
        self._discard()
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self._log_path = self._log_dir / f"guard-{id(self):x}-{self.restarts}.log"
        child = start_child("linarch.search.guard", log_path=self._log_path,
                            hidden_env=self.limits.hidden_env)
        self._child = child
        with contextlib.suppress(OSError):  # died at once: reported below
            child.outbox.send_bytes(json.dumps({"memory_mb": self.limits.memory_mb}).encode())
        message = self._answer(child, self.limits.startup_s, starting=True)
        if message.get("kind") != "ready":
            self._discard()
            raise GuardFailure(f"the front-end worker did not start: {message}")
        return child

    def _answer(self, child: Child, time_s: float, starting: bool = False) -> dict[str, Any]:
        deadline = time.monotonic() + time_s
        while True:
            if child.inbox.poll():
                try:
                    return json.loads(child.inbox.recv_bytes().decode("utf-8"))
                except (EOFError, OSError):
                    break  # died: reported below
                except ValueError as err:
                    self._discard()
                    raise GuardFailure(f"the front-end worker answered garbage: {err}") from err
            if not child.alive():
                break
            if tree_rss_mb(child.pid) > self.limits.memory_mb:
                self._discard()
                raise GuardFailure(f"the front end passed its memory limit "
                                   f"({self.limits.memory_mb} MB); worker killed")
            if time.monotonic() > deadline:
                self._discard()
                what = "start" if starting else "finish"
                raise GuardTimeout(f"the front end did not {what} within {time_s:g}s; "
                                   "worker killed")
            multiprocessing.connection.wait([child.inbox, child.sentinel], timeout=0.05)
        child.popen.wait(timeout=10)
        text = death_text(child.popen.returncode, self._log_path or Path("/dev/null"))
        self._discard()
        raise GuardFailure(f"the front-end worker died: {text}")

    def _discard(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if child.alive():
            kill_tree(child.pid)
            with contextlib.suppress(Exception):  # a zombie is reaped by the kernel later
                child.popen.wait(timeout=10)
        child.close()
        self.restarts += 1
        if self._log_path is not None and not log_tail(self._log_path):
            self._log_path.unlink(missing_ok=True)


def _warm_up() -> None:
    """Import the front end and analyse one program, so the first real call is fast."""
    try:
        import linarch
        from linarch.api import example_path

        linarch.check(example_path("deltanet").read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a broken install shows at the first real call
        traceback.print_exc()


def _child_main(argv: list[str]) -> None:
    inbox, outbox, parent = child_connections(argv)
    die_with_parent(parent)

    def send(message: dict[str, Any]) -> None:
        outbox.send_bytes(json.dumps(message, allow_nan=False).encode("utf-8"))

    header = json.loads(inbox.recv_bytes().decode("utf-8"))
    if header.get("memory_mb"):
        limit_address_space(int(header["memory_mb"]))
    _warm_up()
    send({"kind": "ready"})
    while True:
        try:
            raw = inbox.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            fn, args = pickle.loads(raw)
            send({"kind": "ok", "value": wire.encode(fn(*args))})
        except MemoryError:
            send({"kind": "oom", "text": traceback.format_exc()[-2000:]})
            return
        except Exception as err:  # noqa: BLE001 - the caller gets the traceback
            send({"kind": "error", "type": type(err).__name__,
                  "text": traceback.format_exc()[-4000:]})
        sys.stdout.flush()
        sys.stderr.flush()


if __name__ == "__main__":
    _child_main(sys.argv)
