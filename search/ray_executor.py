"""The executor interface on a Ray cluster: same jobs, same limits, same typed outcomes.

Each job becomes one Ray task that runs the job in a sandboxed child process on whichever
node Ray picks (sandbox.run_sandboxed), so time and memory limits, process-tree kills and the
Outcome categories are exactly those of the local pool. The driver adds a second, outer
deadline: a task still unresolved `grace_s` after its start-up and time limits is cancelled, which
kills its Ray worker and, through the parent-death signal, the job under it.

A local instance (no address) runs on 127.0.0.1 only. Connecting to a cluster started with
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start --head --node-ip-address=127.0.0.1`: pass its GCS
address ("127.0.0.1:6379"); the driver then also takes 127.0.0.1 as its own node address
(otherwise it looks for a raylet on the machine's network address and waits forever).
`ray start` (Ray 2.60) turns token authentication on and keeps the token in
~/.ray/auth_token; a driver joins only with RAY_AUTH_MODE=token, which `auth_mode="token"`
(config: executor.ray_auth_mode) sets before `ray.init`.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from linarch.search.executor import JobSlots
from linarch.search.sandbox import DEFAULT_LIMITS, JobResult, Limits, Outcome, run_sandboxed


def _is_loopback(address: str | None) -> bool:
    if not address:
        return True
    host = address.split("://")[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost")


def _use_loopback() -> None:
    """Keep Ray on 127.0.0.1. Ray binds to the network interface unless
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which it reads once, at import: so set the variable
    (for the processes Ray starts) and the constant it was read into (for this process)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def _set_auth_mode(mode: str) -> None:
    """Ray reads RAY_AUTH_MODE into a cached config; set it and refresh the cache, as Ray
    itself does when it turns token auth on for a local cluster."""
    os.environ["RAY_AUTH_MODE"] = mode
    try:
        from ray._raylet import Config
    except ImportError:  # a Ray without the cached config reads the variable at init
        return
    Config.initialize("")


def _ray_job(job_id: str, fn: Callable[..., Any], args: tuple[Any, ...],
             limits: Limits) -> dict[str, Any]:
    """Runs inside a Ray worker: the job itself runs one process further down. The answer
    travels as plain JSON data (JobResult.to_wire), so the driver unpickles no object of the
    job's making."""
    return run_sandboxed(fn, args, None, limits, job_id).to_wire()


@dataclass
class _Running:
    job_id: str
    ref: Any
    started: float
    limits: Limits


class RayExecutor(JobSlots):
    """Up to `workers` sandboxed jobs at once as Ray tasks."""

    def __init__(
        self,
        workers: int = 2,
        limits: Limits = DEFAULT_LIMITS,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        cpus_per_job: float = 1.0,
        runtime_env: dict[str, Any] | None = None,
        auth_mode: str | None = None,
        loopback: bool | None = None,
        grace_s: float = 60.0,
    ):
        import ray

        self._ray = ray
        self.workers = workers
        self.limits = limits
        self.grace_s = grace_s
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            if loopback if loopback is not None else _is_loopback(address):
                _use_loopback()
            if auth_mode:
                _set_auth_mode(auth_mode)
            common: dict[str, Any] = {
                "runtime_env": runtime_env,
                "log_to_driver": False,
                "configure_logging": False,
            }
            try:
                if address:
                    ray.init(address=address, **common)
                else:  # "local": never attach to some other cluster found on this machine
                    ray.init(
                        address="local",
                        num_cpus=num_cpus or workers,
                        include_dashboard=False,
                        **common,
                    )
            except ConnectionError as err:
                raise ConnectionError(
                    f"could not join Ray at {address}: {err}. A cluster from `ray start` uses "
                    "token authentication: set executor.ray_auth_mode = \"token\" (or "
                    "RAY_AUTH_MODE=token) with the token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
                ) from err
        self._remote = ray.remote(_ray_job).options(num_cpus=cpus_per_job, max_retries=0)
        self._queue: deque[tuple[str, Callable[..., Any], tuple[Any, ...], Limits]] = deque()
        self._running: dict[str, _Running] = {}
        self._done: list[JobResult] = []

    def submit(
        self, job_id: str, fn: Callable[..., Any], *args: Any, limits: Limits | None = None
    ) -> None:
        if job_id in self._running or any(q[0] == job_id for q in self._queue):
            raise ValueError(f"job {job_id!r} is already submitted")
        self._queue.append((job_id, fn, args, limits or self.limits))
        self._fill()

    def wait(self, timeout: float | None = None) -> list[JobResult]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._collect(0.0)
            if self._done or not self._running:
                done, self._done = self._done, []
                return done
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return []
            self._collect(0.2 if remaining is None else min(0.2, remaining))

    def shutdown(self) -> None:
        """Cancel what still runs; disconnect from (or stop) the Ray instance we started."""
        self._queue.clear()
        for run in self._running.values():
            self._ray.cancel(run.ref, force=True)
        self._running.clear()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()

    def _fill(self) -> None:
        while self._queue and len(self._running) < self.workers:
            job_id, fn, args, limits = self._queue.popleft()
            ref = self._remote.remote(job_id, fn, args, limits)
            self._running[job_id] = _Running(job_id, ref, time.monotonic(), limits)

    def _collect(self, timeout: float) -> None:
        ray = self._ray
        by_ref = {run.ref: run for run in self._running.values()}
        if by_ref:
            ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=timeout)
            for ref in ready:
                run = by_ref[ref]
                del self._running[run.job_id]
                self._done.append(self._resolve(run))
        now = time.monotonic()
        for run in list(self._running.values()):
            limit = run.limits.startup_s + run.limits.time_s + self.grace_s
            if now - run.started > limit:
                ray.cancel(run.ref, force=True)
                del self._running[run.job_id]
                self._done.append(
                    JobResult(run.job_id, Outcome.TIMEOUT, error="Ray task force-cancelled "
                              f"after {now - run.started:.0f}s", wall_s=now - run.started)
                )
        self._fill()

    def _resolve(self, run: _Running) -> JobResult:
        ex = self._ray.exceptions
        wall = time.monotonic() - run.started
        try:
            result = self._ray.get(run.ref)
        except ex.OutOfMemoryError as err:
            return JobResult(run.job_id, Outcome.OOM, error=str(err)[-4000:], wall_s=wall)
        except ex.TaskCancelledError as err:
            return JobResult(run.job_id, Outcome.TIMEOUT, error=str(err)[-4000:], wall_s=wall)
        except ex.RayTaskError as err:
            return JobResult(run.job_id, Outcome.ERROR, error=str(err)[-4000:], wall_s=wall)
        except ex.RayError as err:  # worker or node died
            return JobResult(run.job_id, Outcome.CRASH, error=str(err)[-4000:], wall_s=wall)
        try:
            return JobResult.from_wire(result)
        except (KeyError, TypeError, ValueError) as err:
            return JobResult(run.job_id, Outcome.ERROR, error=f"bad task result: {err}")
