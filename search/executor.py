"""Run evaluation jobs in parallel, each sandboxed: a local process pool, or Ray (ray_executor).

Both executors share one small interface, so the loop does not care where a job runs:

    ex.submit(job_id, fn, *args)     # queued; starts when a worker is free
    ex.wait(timeout) -> [JobResult]  # the jobs that finished meanwhile
    ex.free_slots, ex.pending        # for the loop's scheduling
    ex.shutdown()                    # kills whatever still runs

The local pool starts one worker process per job (sandbox.py): a fresh interpreter per
candidate, with credentials removed from its environment, killed with its whole process tree
on timeout or when its memory passes the limit, never shared with the next candidate, and
answering in JSON.
"""

from __future__ import annotations

import multiprocessing.connection
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

from linarch.search.config import ExecutorConfig
from linarch.search.sandbox import DEFAULT_LIMITS, JobResult, Limits, Outcome, SandboxedJob

__all__ = ["Executor", "JobResult", "Limits", "LocalExecutor", "Outcome", "make_executor"]


class Executor(Protocol):
    def submit(
        self, job_id: str, fn: Callable[..., Any], *args: Any, limits: Limits | None = None
    ) -> None: ...

    def wait(self, timeout: float | None = None) -> list[JobResult]: ...

    @property
    def free_slots(self) -> int: ...

    @property
    def pending(self) -> int: ...

    def shutdown(self) -> None: ...


@dataclass(frozen=True)
class _Queued:
    job_id: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    limits: Limits


class JobSlots:
    """Queued and running jobs counted against `workers` slots, and `with` shutting the executor
    down: what both executors (this module's and `ray_executor`'s) share."""

    workers: int
    _queue: deque
    _running: dict

    @property
    def free_slots(self) -> int:
        return max(0, self.workers - len(self._running) - len(self._queue))

    @property
    def pending(self) -> int:
        return len(self._running) + len(self._queue)

    def shutdown(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class LocalExecutor(JobSlots):
    """Up to `workers` sandboxed jobs at once on this machine."""

    def __init__(
        self, workers: int = 2, limits: Limits = DEFAULT_LIMITS, log_dir: Path | None = None
    ):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self.limits = limits
        self.log_dir = log_dir
        self._queue: deque[_Queued] = deque()
        self._running: dict[str, SandboxedJob] = {}
        self._done: list[JobResult] = []

    def running_pids(self) -> dict[str, int]:
        return {jid: job.pid for jid, job in self._running.items() if job.pid is not None}

    def submit(
        self, job_id: str, fn: Callable[..., Any], *args: Any, limits: Limits | None = None
    ) -> None:
        if job_id in self._running or any(q.job_id == job_id for q in self._queue):
            raise ValueError(f"job {job_id!r} is already submitted")
        self._queue.append(_Queued(job_id, fn, args, limits or self.limits))
        self._fill()

    def wait(self, timeout: float | None = None) -> list[JobResult]:
        """Return finished jobs; block up to `timeout` seconds (None: until one finishes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._reap()
            if self._done or not self._running:
                done, self._done = self._done, []
                return done
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            poll = min(job.limits.poll_s for job in self._running.values())
            step = poll if remaining is None else min(poll, remaining)
            waitables = [job.sentinel for job in self._running.values()]
            waitables += [job.connection for job in self._running.values()]
            multiprocessing.connection.wait(waitables, timeout=step)

    def shutdown(self) -> None:
        """Kill running jobs (their results are dropped) and forget queued ones."""
        self._queue.clear()
        for job in list(self._running.values()):
            job.kill(Outcome.ERROR, "executor shut down")
        self._running.clear()

    def _reap(self) -> None:
        for job_id, job in list(self._running.items()):
            result = job.poll()
            if result is not None:
                del self._running[job_id]
                self._done.append(result)
        self._fill()

    def _fill(self) -> None:
        while self._queue and len(self._running) < self.workers:
            q = self._queue.popleft()
            job = SandboxedJob(q.job_id, q.fn, q.args, None, q.limits, self.log_dir)
            self._running[q.job_id] = job.start()


def limits_from_config(config: ExecutorConfig, hidden_env: tuple[str, ...] = ()) -> Limits:
    return Limits(
        time_s=config.time_limit_s,
        memory_mb=config.memory_limit_mb or None,
        memory_mode=config.memory_mode,
        hidden_env=hidden_env,
    )


def make_executor(config: ExecutorConfig, log_dir: Path | None = None,
                  hidden_env: tuple[str, ...] = ()) -> Executor:
    """The executor a config asks for: `kind = "local"` or `kind = "ray"` (with `address`).
    `hidden_env` names environment variables no job may see (the LLM key's variable)."""
    limits = limits_from_config(config, hidden_env)
    if config.kind == "local":
        return LocalExecutor(config.workers, limits, log_dir)
    if config.kind == "ray":
        from linarch.search.ray_executor import RayExecutor

        return RayExecutor(
            workers=config.workers,
            limits=limits,
            address=config.address or None,
            auth_mode=config.ray_auth_mode or None,
        )
    raise ValueError(f"unknown executor kind {config.kind!r}")
