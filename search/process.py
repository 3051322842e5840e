"""Starting a worker interpreter the search does not trust: clean environment, own session,
dies with its parent, talks over two pipes.

Both kinds of worker use it: a sandboxed job (sandbox.py, one process per job) and the
front-end guard (guard.py, one long-lived process that answers compiler calls). The child is
started with `subprocess.Popen`, not multiprocessing, because only an exec with an explicit
environment keeps secrets out of it: the API key of the LLM endpoint is removed before the
interpreter starts, so it is neither in `os.environ` nor in `/proc/self/environ` of a job.

The parent writes pickles (a function reference and arguments it built itself) and reads JSON
(wire.py): nothing a worker sends back can run code in the search process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import psutil

# environment variables that look like credentials: never handed to a worker
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE", re.IGNORECASE)
_PR_SET_PDEATHSIG = 1


def scrubbed_environ(hidden: Iterable[str] = (), base: dict[str, str] | None = None
                     ) -> dict[str, str]:
    """The parent's environment without credentials: names in `hidden` (the configured
    `llm.api_key_env`) and every name that looks like a key, token, secret or password.
    PYTHONPATH carries the parent's `sys.path`, so a worker imports what the parent can."""
    env = dict(os.environ if base is None else base)
    drop = set(hidden)
    env = {k: v for k, v in env.items() if k not in drop and not SECRET_NAME.search(k)}
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


@dataclass
class Child:
    """A started worker: its process, the pipe it answers on, the pipe it reads from."""

    popen: subprocess.Popen
    inbox: Connection  # the parent reads the child's messages here
    outbox: Connection  # the parent writes to the child here
    sentinel: int  # a pidfd: readable once the process has exited

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def close(self) -> None:
        for conn in (self.inbox, self.outbox):
            with contextlib.suppress(OSError):
                conn.close()
        with contextlib.suppress(OSError):
            os.close(self.sentinel)


def start_child(module: str, *, log_path: Path, hidden_env: Sequence[str] = ()) -> Child:
    """Run ``python -m module IN OUT PARENT`` with a scrubbed environment in a new session;
    its stdout and stderr go to `log_path`."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, str(to_child_r), str(from_child_w), str(os.getpid())],
            pass_fds=(to_child_r, from_child_w), env=scrubbed_environ(hidden_env),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
    finally:
        log.close()
        os.close(to_child_r)
        os.close(from_child_w)
    return Child(popen, Connection(from_child_r, writable=False),
                 Connection(to_child_w, readable=False), os.pidfd_open(popen.pid))


def child_connections(argv: Sequence[str]) -> tuple[Connection, Connection, int]:
    """In the child: (inbox, outbox, parent pid) from the command line of start_child."""
    read_fd, write_fd, parent = int(argv[1]), int(argv[2]), int(argv[3])
    return Connection(read_fd, writable=False), Connection(write_fd, readable=False), parent


def die_with_parent(parent: int) -> None:
    """Make sure a worker does not outlive the process that started it."""
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


def limit_address_space(memory_mb: int) -> None:
    import resource

    cap = int(memory_mb) * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


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


def tree_rss_mb(pid: int) -> float:
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


def death_text(returncode: int | None, log_path: Path) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        head = f"process died from {name} without a result"
    else:
        head = f"process exited with code {returncode} without a result"
    tail = log_tail(log_path)
    return f"{head}\n{tail}" if tail else head


def log_tail(path: Path, limit: int = 4000) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()
