"""One job in one spawned, killable process, with a time limit and a memory limit.

Search pitfalls this answers: timeouts that stop waiting but leave the work running, and
generated code run inside the parent. The child starts in its own session (so its whole
process group can be killed), dies with its parent (PR_SET_PDEATHSIG, plus a watcher thread),
writes its stdout/stderr to a log file, and sends back one message: the value, or the
traceback. The parent watches wall time and the resident memory of the child's whole process
tree, and kills the tree when either limit is passed. Outcomes are typed:
OK, TIMEOUT, OOM, CRASH (died without answering: a signal or os._exit), ERROR (raised).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
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

import psutil

from linarch.evaluation.results import Outcome

_OOM_TEXT = ("can't allocate memory", "cannot allocate memory", "out of memory")
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Limits:
    time_s: float = 3600.0  # from the moment the job's function is called
    startup_s: float = 120.0  # to start the interpreter and unpickle (import) the job
    memory_mb: int | None = None
    memory_mode: str = "rss"  # "rss": parent watchdog on the tree's RSS; "rlimit": RLIMIT_AS
    poll_s: float = 0.05


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
        self._process: mp.process.BaseProcess | None = None
        self._conn: Any = None
        self._start = 0.0
        self._job_start: float | None = None
        self._peak_mb = 0.0
        self.result: JobResult | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def connection(self) -> Any:
        """The result pipe, for multiprocessing.connection.wait."""
        return self._conn

    @property
    def sentinel(self) -> int:
        assert self._process is not None
        return self._process.sentinel

    def start(self) -> SandboxedJob:
        ctx = mp.get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=_child_main,
            args=(child_conn, self._payload, self.limits, str(self.log_path), os.getpid()),
            name=f"linarch-job-{self.job_id}",
            daemon=False,
        )
        self._start = time.monotonic()
        self._process.start()
        child_conn.close()
        self._conn = parent_conn
        return self

    def poll(self) -> JobResult | None:
        """Check once: finished, answered, over time or over memory. Never blocks long."""
        if self.result is not None:
            return self.result
        assert self._process is not None, "start() first"
        if self._conn.poll():
            return self._receive()
        if not self._process.is_alive():
            if self._conn.poll():  # it answered just before it exited
                return self._receive()
            return self._finish(Outcome.CRASH, _death_text(self._process.exitcode, self.log_path))
        now = time.monotonic()
        if self._job_start is None and now - self._start > self.limits.startup_s:
            return self.kill(Outcome.TIMEOUT, f"the job did not start within "
                             f"{self.limits.startup_s:g}s")
        if self._job_start is not None and now - self._job_start > self.limits.time_s:
            return self.kill(Outcome.TIMEOUT, f"killed after {now - self._job_start:.1f}s "
                             f"(limit {self.limits.time_s:g}s)")
        rss = _tree_rss_mb(self._process.pid)
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
            multiprocessing.connection.wait(
                [self._conn, self.sentinel], timeout=self.limits.poll_s
            )

    def kill(self, outcome: Outcome, reason: str) -> JobResult:
        """Kill the child and everything it started, wait for it, and record why."""
        if self.result is not None:
            return self.result
        assert self._process is not None
        kill_tree(self._process.pid)
        self._process.join(timeout=10)
        return self._finish(outcome, reason)

    def _receive(self) -> JobResult | None:
        try:
            kind, body = self._conn.recv()
        except (EOFError, OSError) as err:  # the child died: its end of the pipe closed
            self._process.join(timeout=5)
            if self._process.is_alive():
                return self.kill(Outcome.CRASH, f"result channel closed, process alive: {err!r}")
            return self._finish(Outcome.CRASH, _death_text(self._process.exitcode, self.log_path))
        if kind == "started":
            self._job_start = time.monotonic()
            return self.poll()
        assert self._process is not None
        self._process.join(timeout=5)
        if self._process.is_alive():  # answered, but a thread it started keeps it alive
            kill_tree(self._process.pid)
            self._process.join(timeout=10)
        if kind == "ok":
            return self._finish(Outcome.OK, "", value=body)
        return self._finish(Outcome.OOM if kind == "oom" else Outcome.ERROR, body)

    def _finish(self, outcome: Outcome, error: str, value: Any = None) -> JobResult:
        assert self._process is not None
        self._conn.close()
        self.result = JobResult(
            job_id=self.job_id,
            outcome=outcome,
            value=value,
            error=error,
            wall_s=time.monotonic() - (self._job_start or self._start),
            peak_rss_mb=self._peak_mb,
            pid=self._process.pid,
            exitcode=self._process.exitcode,
        )
        if outcome is Outcome.OK or not self._keep_log:  # a failure's tail is in `error`
            self.log_path.unlink(missing_ok=True)
        return self.result


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


def kill_tree(pid: int) -> None:
    """SIGKILL a process, its process group if it leads one, and all its descendants."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    try:
        if os.getpgid(pid) == pid:  # only a group the child leads: never our own group
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for proc in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def _tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total / 2**20


def _death_text(exitcode: int | None, log_path: Path) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        head = f"process died from {name} without a result"
    else:
        head = f"process exited with code {exitcode} without a result"
    tail = _tail(log_path)
    return f"{head}\n{tail}" if tail else head


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()


def _child_main(conn: Any, payload: bytes, limits: Limits, log_path: str, parent: int) -> None:
    """Entry point of the spawned process."""
    os.setsid()
    _die_with_parent(parent)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import faulthandler

    faulthandler.enable()
    if limits.memory_mb is not None and limits.memory_mode == "rlimit":
        import resource

        cap = int(limits.memory_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        fn, args, kwargs = pickle.loads(payload)
        conn.send(("started", None))
        value = fn(*args, **kwargs)
        message: tuple[str, Any] = ("ok", value)
    except MemoryError:
        message = ("oom", "MemoryError:\n" + traceback.format_exc()[-4000:])
    except BaseException as err:
        text = traceback.format_exc()[-4000:]
        kind = "oom" if _looks_like_oom(err) else "error"
        message = (kind, text)
    try:
        conn.send(message)
    except Exception:  # an unpicklable value: report that instead
        conn.send(("error", "the job's return value could not be sent back:\n"
                   + traceback.format_exc()[-4000:]))
    conn.close()
    sys.stdout.flush()
    sys.stderr.flush()


def _looks_like_oom(err: BaseException) -> bool:
    if type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError
        return True
    text = str(err).lower()
    return any(t in text for t in _OOM_TEXT)


def _die_with_parent(parent: int) -> None:
    """Make sure the job does not outlive the process that started it."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(70)
            time.sleep(0.5)

    if os.getppid() != parent:
        os._exit(70)
    threading.Thread(target=watch, daemon=True, name="linarch-parent-watch").start()
