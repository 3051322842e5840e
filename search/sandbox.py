"""One job in one killable worker process, with a time limit and a memory limit.

Search pitfalls this answers: timeouts that stop waiting but leave the work running, generated
code run inside the parent, secrets inherited by the code under test, and results that can
execute code when they are read. The child (process.py) starts with a scrubbed environment in
its own session (so its whole process group can be killed), dies with its parent, writes its
stdout/stderr to a log file, and sends back one JSON message (wire.py): the value, or the
traceback. The parent watches wall time and the resident memory of the child's whole process
tree, and kills the tree when either limit is passed. Outcomes are typed:
OK, TIMEOUT, OOM, CRASH (died without answering: a signal or os._exit), ERROR (raised).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing.connection
import os
import pickle
import sys
import tempfile
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
    start_child,
    tree_rss_mb,
)

__all__ = ["DEFAULT_LIMITS", "JobResult", "Limits", "Outcome", "SandboxedJob", "kill_tree",
           "run_sandboxed"]

from linarch.evaluation.results import Outcome

_OOM_TEXT = ("can't allocate memory", "cannot allocate memory", "out of memory")


@dataclass(frozen=True)
class Limits:
    time_s: float = 3600.0  # from the moment the job's function is called
    startup_s: float = 120.0  # to start the interpreter and unpickle (import) the job
    memory_mb: int | None = None
    memory_mode: str = "rss"  # "rss": parent watchdog on the tree's RSS; "rlimit": RLIMIT_AS
    poll_s: float = 0.05
    hidden_env: tuple[str, ...] = ()  # variables (beyond credential-like names) kept from jobs


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class JobResult:
    job_id: str
    outcome: Outcome
    value: Any = None
    error: str = ""
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    pid: int | None = None
    exitcode: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """JSON-ready, for a hop through Ray (whose own transport pickles)."""
        return {"job_id": self.job_id, "outcome": self.outcome.value,
                "value": wire.encode(self.value), "error": self.error, "wall_s": self.wall_s,
                "peak_rss_mb": self.peak_rss_mb, "pid": self.pid, "exitcode": self.exitcode}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> JobResult:
        return cls(str(data["job_id"]), Outcome(data["outcome"]), wire.decode(data["value"]),
                   str(data["error"]), float(data["wall_s"]), float(data["peak_rss_mb"]),
                   data["pid"], data["exitcode"])


class SandboxedJob:
    """A job running in its own process; `poll()` until it returns a JobResult."""

    def __init__(
        self,
        job_id: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        log_dir: Path | None = None,
    ):
        self.job_id = job_id
        self.limits = limits
        self._payload = pickle.dumps((fn, tuple(args), dict(kwargs or {})))
        self._keep_log = log_dir is not None  # else the log lives only until the job ends
        log_root = Path(log_dir) if log_dir is not None else Path(tempfile.gettempdir())
        log_root.mkdir(parents=True, exist_ok=True)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in job_id)
        self.log_path = log_root / f"job-{safe}-{os.getpid()}-{id(self):x}.log"
        self._child: Child | None = None
        self._start = 0.0
        self._job_start: float | None = None
        self._peak_mb = 0.0
        self.result: JobResult | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def connection(self) -> Any:
        """The result pipe, for multiprocessing.connection.wait."""
        assert self._child is not None
        return self._child.inbox

    @property
    def sentinel(self) -> int:
        assert self._child is not None
        return self._child.sentinel

    def start(self) -> SandboxedJob:
        self._start = time.monotonic()
        self._child = start_child("linarch.search.sandbox", log_path=self.log_path,
                                  hidden_env=self.limits.hidden_env)
        header = {"memory_mb": self.limits.memory_mb if self.limits.memory_mode == "rlimit"
                  else None}
        try:
            self._child.outbox.send_bytes(json.dumps(header).encode())
            self._child.outbox.send_bytes(self._payload)
        except OSError:  # died before reading: poll() reports how
            pass
        return self

    def poll(self) -> JobResult | None:
        """Check once: finished, answered, over time or over memory. Never blocks long."""
        if self.result is not None:
            return self.result
        child = self._child
        assert child is not None, "start() first"
        if child.inbox.poll():
            return self._receive()
        if not child.alive():
            if child.inbox.poll():  # it answered just before it exited
                return self._receive()
            return self._finish(Outcome.CRASH, death_text(child.popen.returncode, self.log_path))
        now = time.monotonic()
        if self._job_start is None and now - self._start > self.limits.startup_s:
            return self.kill(Outcome.TIMEOUT, f"the job did not start within "
                             f"{self.limits.startup_s:g}s")
        if self._job_start is not None and now - self._job_start > self.limits.time_s:
            return self.kill(Outcome.TIMEOUT, f"killed after {now - self._job_start:.1f}s "
                             f"(limit {self.limits.time_s:g}s)")
        rss = tree_rss_mb(child.pid)
        self._peak_mb = max(self._peak_mb, rss)
        limit = self.limits.memory_mb
        if limit is not None and self.limits.memory_mode == "rss" and rss > limit:
            return self.kill(Outcome.OOM, f"killed at {rss:.0f} MB resident (limit {limit} MB)")
        return None

    def wait(self) -> JobResult:
        while True:
            result = self.poll()
            if result is not None:
                return result
            multiprocessing.connection.wait([self.connection, self.sentinel],
                                            timeout=self.limits.poll_s)

    def kill(self, outcome: Outcome, reason: str) -> JobResult:
        """Kill the child and everything it started, wait for it, and record why."""
        if self.result is not None:
            return self.result
        assert self._child is not None
        kill_tree(self._child.pid)
        _reap(self._child, 10)
        return self._finish(outcome, reason)

    def _receive(self) -> JobResult | None:
        child = self._child
        assert child is not None
        try:
            message = json.loads(child.inbox.recv_bytes().decode("utf-8"))
        except (EOFError, OSError):  # the child died: its end of the pipe closed
            _reap(child, 5)
            if child.alive():
                return self.kill(Outcome.CRASH, "result channel closed, process alive")
            return self._finish(Outcome.CRASH, death_text(child.popen.returncode, self.log_path))
        except ValueError as err:
            return self.kill(Outcome.ERROR, f"the job answered something that is not JSON: {err}")
        kind = message.get("kind")
        if kind == "started":
            self._job_start = time.monotonic()
            return self.poll()
        _reap(child, 5)
        if child.alive():  # answered, but a thread it started keeps it alive
            kill_tree(child.pid)
            _reap(child, 10)
        if kind == "ok":
            try:
                value = wire.decode(message.get("value"))
            except (wire.WireError, KeyError, TypeError, ValueError) as err:
                return self._finish(Outcome.ERROR, f"the job's answer could not be read: {err}")
            return self._finish(Outcome.OK, "", value=value)
        text = str(message.get("text", ""))
        return self._finish(Outcome.OOM if kind == "oom" else Outcome.ERROR, text)

    def _finish(self, outcome: Outcome, error: str, value: Any = None) -> JobResult:
        child = self._child
        assert child is not None
        child.close()
        self.result = JobResult(
            job_id=self.job_id,
            outcome=outcome,
            value=value,
            error=error,
            wall_s=time.monotonic() - (self._job_start or self._start),
            peak_rss_mb=self._peak_mb,
            pid=child.pid,
            exitcode=child.popen.returncode,
        )
        if outcome is Outcome.OK or not self._keep_log:  # a failure's tail is in `error`
            self.log_path.unlink(missing_ok=True)
        return self.result


def _reap(child: Child, timeout: float) -> None:
    with contextlib.suppress(Exception):  # still alive: the caller decides
        child.popen.wait(timeout=timeout)


def run_sandboxed(
    fn: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    job_id: str = "job",
    log_dir: Path | None = None,
) -> JobResult:
    """Run one job to completion in a sandboxed process (the Ray executor's unit of work)."""
    return SandboxedJob(job_id, fn, args, kwargs, limits, log_dir).start().wait()


def _looks_like_oom(err: BaseException) -> bool:
    if type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError
        return True
    text = str(err).lower()
    return any(t in text for t in _OOM_TEXT)


def _child_main(argv: list[str]) -> None:
    """Entry point of the worker process (``python -m linarch.search.sandbox IN OUT PARENT``)."""
    inbox, outbox, parent = child_connections(argv)
    die_with_parent(parent)
    import faulthandler

    faulthandler.enable()

    def send(message: dict[str, Any]) -> None:
        outbox.send_bytes(json.dumps(message, allow_nan=False).encode("utf-8"))

    header = json.loads(inbox.recv_bytes().decode("utf-8"))
    if header.get("memory_mb") is not None:
        limit_address_space(header["memory_mb"])
    try:
        fn, args, kwargs = pickle.loads(inbox.recv_bytes())
        send({"kind": "started"})
        value = fn(*args, **kwargs)
        try:
            message: dict[str, Any] = {"kind": "ok", "value": wire.encode(value)}
            json.dumps(message, allow_nan=False)
        except (wire.WireError, TypeError, ValueError) as err:
            message = {"kind": "error", "text": "the job's return value could not be sent "
                       f"back as JSON: {err}"}
    except MemoryError:
        message = {"kind": "oom", "text": "MemoryError:\n" + traceback.format_exc()[-4000:]}
    except BaseException as err:
        text = traceback.format_exc()[-4000:]
        message = {"kind": "oom" if _looks_like_oom(err) else "error", "text": text}
    send(message)
    outbox.close()
    sys.stdout.flush()
    sys.stderr.flush()


if __name__ == "__main__":
    _child_main(sys.argv)
