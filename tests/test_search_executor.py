"""Executors: sandboxed jobs with time and memory limits, typed outcomes, kills that kill.

The local pool and the Ray executor run the same jobs (linarch_testing.search_fakes) and must give
the same
Outcome for each. Ray runs on loopback only: a local instance from ray.init, and a cluster
from `ray start --head --node-ip-address=127.0.0.1` joined by address.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from linarch.search.config import ExecutorConfig
from linarch.search.executor import LocalExecutor, make_executor
from linarch.search.sandbox import Limits, Outcome, kill_tree
from linarch_testing import search_fakes as jobs

TESTS = str(Path(__file__).resolve().parent)


def gone(pid: int, within: float = 5.0) -> bool:
    """True once `pid` no longer runs (reaped, or a zombie waiting for its parent)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def wait_for_file(path: Path, within: float = 60.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def run_all(ex, submissions):
    for job_id, fn, *args in submissions:
        ex.submit(job_id, fn, *args)
    results = {}
    while ex.pending:
        for r in ex.wait(timeout=30):
            results[r.job_id] = r
    return results


def check_outcomes(results):
    assert results["ok"].outcome is Outcome.OK and results["ok"].value == 5
    assert results["raise"].outcome is Outcome.ERROR
    assert "ValueError: boom" in results["raise"].error
    assert results["segv"].outcome is Outcome.CRASH
    assert "SIGSEGV" in results["segv"].error
    assert results["after"].outcome is Outcome.OK and results["after"].value == 7


# ------------------------------------------------------------------------------ local


def test_outcomes_and_the_pool_goes_on(tmp_path):
    with LocalExecutor(workers=3, limits=Limits(time_s=60), log_dir=tmp_path) as ex:
        results = run_all(ex, [
            ("ok", jobs.add, 2, 3),
            ("raise", jobs.raise_value_error, "boom"),
            ("segv", jobs.segfault),
            ("exit", jobs.exit_hard, 3),
            ("unpicklable", jobs.return_unpicklable),
            ("after", jobs.add, 3, 4),
        ])
    check_outcomes(results)
    assert results["exit"].outcome is Outcome.CRASH and results["exit"].exitcode == 3
    assert results["unpicklable"].outcome is Outcome.ERROR
    assert "could not be sent back as JSON" in results["unpicklable"].error
    assert "Fatal Python error: Segmentation fault" in results["segv"].error  # the job's log
    assert not list(tmp_path.glob("job-ok-*.log"))  # logs are kept only for failures
    for r in results.values():
        assert gone(r.pid)


def test_timeout_kills_the_job_and_its_children(tmp_path):
    pids = tmp_path / "pids"
    with LocalExecutor(workers=1, limits=Limits(time_s=1.0)) as ex:
        ex.submit("hang", jobs.spawn_grandchild_and_sleep, str(pids), 60)
        (result,) = ex.wait(timeout=60)
    assert result.outcome is Outcome.TIMEOUT and "limit 1s" in result.error
    assert 1.0 <= result.wall_s < 10
    job_pid, grandchild_pid = map(int, pids.read_text().split())
    assert job_pid == result.pid
    assert gone(job_pid) and gone(grandchild_pid)


def test_time_limit_starts_when_the_job_starts():
    """Interpreter start-up and imports (often seconds) are not charged to the job."""
    start = time.monotonic()
    with LocalExecutor(workers=1, limits=Limits(time_s=0.5)) as ex:
        ex.submit("quick", jobs.add, jobs.SlowToUnpickle(1.0, 2), 3)  # 1 s to start
        (result,) = ex.wait(timeout=60)
    assert result.outcome is Outcome.OK and result.value == 5
    assert time.monotonic() - start > 1.0 > result.wall_s
    with LocalExecutor(workers=1, limits=Limits(time_s=60, startup_s=0.3)) as ex:
        ex.submit("slow-start", jobs.add, jobs.SlowToUnpickle(30.0, 2), 3)
        (result,) = ex.wait(timeout=60)
    assert result.outcome is Outcome.TIMEOUT and "did not start within" in result.error


def test_memory_limit_by_rss_watchdog():
    with LocalExecutor(workers=1, limits=Limits(time_s=60, memory_mb=250)) as ex:
        ex.submit("hog", jobs.allocate_mb, 3000)
        (result,) = ex.wait(timeout=60)
    assert result.outcome is Outcome.OOM and "limit 250 MB" in result.error
    assert result.peak_rss_mb > 250
    assert gone(result.pid)


def test_memory_limit_by_rlimit():
    limits = Limits(time_s=60, memory_mb=600, memory_mode="rlimit")
    with LocalExecutor(workers=1, limits=limits) as ex:
        ex.submit("hog", jobs.allocate_mb, 3000)
        (result,) = ex.wait(timeout=60)
    assert result.outcome is Outcome.OOM and "MemoryError" in result.error


def test_jobs_run_in_parallel_and_shutdown_kills_them(tmp_path):
    ex = LocalExecutor(workers=2, limits=Limits(time_s=60))
    for i in range(2):
        ex.submit(f"j{i}", jobs.write_pid_and_sleep, str(tmp_path / f"p{i}"), 60)
    ex.submit("queued", jobs.add, 1, 1)
    assert ex.free_slots == 0 and ex.pending == 3
    pids = [int(wait_for_file(tmp_path / f"p{i}")) for i in range(2)]
    assert sorted(ex.running_pids().values()) == sorted(pids)
    ex.shutdown()
    assert all(gone(pid) for pid in pids) and ex.pending == 0


def test_jobs_die_with_the_process_that_started_them(tmp_path):
    pidfile = tmp_path / "job.pid"
    script = (
        f"import sys; sys.path.insert(0, {TESTS!r})\n"
        "from linarch_testing import search_fakes as jobs\n"
        "from linarch.search.executor import LocalExecutor\n"
        "if __name__ == '__main__':\n"
        f"    ex = LocalExecutor(workers=1, log_dir={str(tmp_path)!r})\n"
        f"    ex.submit('j', jobs.write_pid_and_sleep, {str(pidfile)!r}, 120)\n"
        "    ex.wait(timeout=120)\n"
    )
    (tmp_path / "driver.py").write_text(script)
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py")])
    try:
        job = int(wait_for_file(pidfile))
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        assert gone(job, within=5.0), "an orphaned job kept running"
    finally:
        if driver.poll() is None:
            driver.kill()


def test_jobs_never_see_credentials(monkeypatch):
    """The LLM key (any name it is configured under) and anything that looks like a credential
    are removed before the worker's interpreter starts: not in os.environ, not in the
    environment block the process was started with."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-1")
    monkeypatch.setenv("MY_ENDPOINT_CRED", "sk-secret-2")
    monkeypatch.setenv("HF_TOKEN", "hf-secret-3")
    monkeypatch.setenv("LINARCH_VISIBLE", "kept")
    limits = Limits(time_s=60, hidden_env=("MY_ENDPOINT_CRED",))
    with LocalExecutor(workers=1, limits=limits) as ex:
        ex.submit("env", jobs.environment_seen)
        (result,) = ex.wait(timeout=60)
    assert result.outcome is Outcome.OK
    seen = result.value["environ"] + result.value["initial"]
    for secret in ("sk-secret-1", "sk-secret-2", "hf-secret-3", "OPENAI_API_KEY", "HF_TOKEN",
                   "MY_ENDPOINT_CRED"):
        assert secret not in seen
    assert "LINARCH_VISIBLE" in result.value["environ"]


def test_results_come_back_as_json_never_as_pickles(tmp_path):
    """A value that would run code when unpickled is refused in the worker; records the
    search knows (EvalResult) round-trip, infinite bounds included."""
    marker = Path("/tmp/linarch-pwned")
    marker.unlink(missing_ok=True)
    with LocalExecutor(workers=2, limits=Limits(time_s=60)) as ex:
        results = run_all(ex, [("evil", jobs.return_code_running_value),
                               ("record", jobs.return_eval_result)])
    assert results["evil"].outcome is Outcome.ERROR
    assert "cannot be sent as JSON" in results["evil"].error
    assert not marker.exists()
    assert results["record"].value == jobs.return_eval_result()
    assert results["record"].value.ci_low == -float("inf")


def test_make_executor_from_config():
    ex = make_executor(ExecutorConfig(kind="local", workers=3, time_limit_s=5,
                                      memory_limit_mb=100))
    assert isinstance(ex, LocalExecutor) and ex.workers == 3
    assert ex.limits == Limits(time_s=5, memory_mb=100, memory_mode="rss")
    default = make_executor(ExecutorConfig(), hidden_env=("KEY_VAR",))
    assert default.limits.memory_mb == 6000 and default.limits.hidden_env == ("KEY_VAR",)
    assert make_executor(ExecutorConfig(memory_limit_mb=0)).limits.memory_mb is None


# ------------------------------------------------------------------------------ Ray


@pytest.fixture
def ray_env(monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # Ray sets it; restore afterwards
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Ray's workers start from the raylet's environment: that is how they import linarch_testing
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", TESTS + (os.pathsep + path if path else ""))


@pytest.mark.slow
def test_ray_local_cluster_gives_the_same_outcomes(ray_env, tmp_path):
    from linarch.search.ray_executor import RayExecutor

    pids = tmp_path / "pids"
    ex = RayExecutor(workers=3, limits=Limits(time_s=1.5), num_cpus=3)
    try:
        import ray

        assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
        results = run_all(ex, [
            ("ok", jobs.add, 2, 3),
            ("segv", jobs.segfault),
            ("hang", jobs.spawn_grandchild_and_sleep, str(pids), 60),
            ("raise", jobs.raise_value_error, "boom"),
            ("after", jobs.add, 3, 4),
        ])
        listening = {c.laddr.ip for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.pid in _ray_pids()}
    finally:
        ex.shutdown()
    check_outcomes(results)
    assert listening <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
    assert results["hang"].outcome is Outcome.TIMEOUT
    job_pid, grandchild_pid = map(int, pids.read_text().split())
    assert gone(job_pid) and gone(grandchild_pid)


def _ray_pids() -> set[int]:
    """This process's Ray children (GCS, raylet, workers...)."""
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
def test_ray_cluster_joined_by_address_on_loopback(ray_env, tmp_path):
    """`ray start --head --node-ip-address=127.0.0.1`, then a driver joins with its address.

    `ray start` turns token authentication on, so the driver needs RAY_AUTH_MODE=token
    (executor.ray_auth_mode = "token"); without it Ray refuses the connection.
    """
    from linarch.search.ray_executor import RayExecutor

    port = _free_port()
    temp = tempfile.mkdtemp(prefix="lr", dir="/tmp")  # short: Ray's socket paths are limited
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _listening(port):
            assert time.monotonic() < deadline and head.poll() is None, "ray start failed"
            time.sleep(0.2)
        pidfile = tmp_path / "pid"
        ex = RayExecutor(workers=2, limits=Limits(time_s=1.5), address=f"127.0.0.1:{port}",
                         auth_mode="token")
        try:
            results = run_all(ex, [("ok", jobs.add, 2, 3),
                                   ("hang", jobs.write_pid_and_sleep, str(pidfile), 60)])
        finally:
            ex.shutdown()
        assert results["ok"].outcome is Outcome.OK and results["ok"].value == 5
        assert results["hang"].outcome is Outcome.TIMEOUT
        assert gone(int(pidfile.read_text()))
        listeners = {c.laddr.ip for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
        assert listeners <= {"127.0.0.1", "::ffff:127.0.0.1"}
    finally:
        _stop_ray_head(head, temp)


def _stop_ray_head(head: subprocess.Popen, temp: str) -> None:
    """Kill what this test started: the head's process group, and every process (workers
    included) whose command line names this test's private temp dir."""
    ours = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(temp in part for part in proc.info["cmdline"] or ()):
            ours.append(proc)
    for proc in list(ours):
        with contextlib.suppress(psutil.NoSuchProcess):
            ours.extend(proc.children(recursive=True))
    kill_tree(head.pid)
    for proc in ours:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    head.wait(timeout=30)
    psutil.wait_procs(ours, timeout=10)
    shutil.rmtree(temp, ignore_errors=True)
