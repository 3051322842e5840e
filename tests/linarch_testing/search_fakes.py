"""Test doubles for linarch.search: a toy compiler, a toy evaluation, jobs for the executors.

The real compiler (`linarch.check`, `linarch.analyze`) and evaluation are built elsewhere; the
search only sees them through injected callables. The toy language here has the same shape
of answers (diagnostics with codes and positions, an analysis with an IR graph, a structural
hash, FLOPs and state size), so the search's code paths run for real against it:

    mixer Name
    state delta          # identity | scalar | diagonal | delta | dplr | householder
    gate scalar          # optional: none | scalar | diagonal
    heads 4
    dim 32
    path memory          # each path is one branch that the router mixes
    path fir 3
    beta 2               # optional: beta range [0, 2] (negative eigenvalues)

This module is imported by spawned worker processes, so it must stay cheap to import.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linarch.search.records import EvalJob, EvalResult

STATE_CLASSES = ("identity", "scalar", "diagonal", "delta", "dplr", "householder")
GATES = ("none", "scalar", "diagonal")
PATH_KINDS = ("memory", "fir", "value", "conv")


# --------------------------------------------------------------------------- toy compiler


@dataclass(frozen=True)
class ToyDiagnostic:
    code: str
    severity: str
    message: str
    hint: str
    line: int
    col: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "line": self.line,
            "col": self.col,
        }


@dataclass(frozen=True)
class ToyNode:
    op: str


@dataclass(frozen=True)
class ToyAnalysis:
    name: str
    structural_hash: str
    flops_per_token: int
    state_bytes: int
    transition_classes: tuple[str, ...]
    num_paths: int
    graph: Any


@dataclass(frozen=True)
class ToyProgram:
    name: str
    state: str
    gate: str
    heads: int
    dim: int
    beta: int
    paths: tuple[str, ...]


def toy_parse(source: str) -> tuple[ToyProgram | None, list[ToyDiagnostic]]:
    diags: list[ToyDiagnostic] = []
    fields: dict[str, Any] = {"gate": "none", "heads": 4, "dim": 32, "beta": 1}
    paths: list[str] = []
    name = None

    def err(code: str, msg: str, hint: str, line: int, col: int = 1) -> None:
        diags.append(ToyDiagnostic(code, "error", msg, hint, line, col))

    for no, raw in enumerate(source.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        head = words[0]
        if name is None:
            if head != "mixer" or len(words) != 2:
                err("LA100", "expected `mixer NAME` first", "start with `mixer MyMixer`", no)
                return None, diags
            name = words[1]
            continue
        if "mean" in words and "time" in words:
            col = raw.index("mean") + 1
            err("LA201", "`mean over time` reads every position of the sequence",
                "a running mean is causal: cumsum over time divided by t", no, col)
        elif head == "state" and len(words) == 2:
            if words[1] not in STATE_CLASSES:
                err("LA300", f"unknown state class {words[1]!r}",
                    f"one of {', '.join(STATE_CLASSES)}", no, 7)
            fields["state"] = words[1]
        elif head == "gate" and len(words) == 2 and words[1] in GATES:
            fields["gate"] = words[1]
        elif head in ("heads", "dim", "beta") and len(words) == 2 and words[1].isdigit():
            fields[head] = int(words[1])
        elif head == "path" and len(words) >= 2 and words[1] in PATH_KINDS:
            paths.append(" ".join(words[1:]))
        else:
            err("LA101", f"cannot read `{line}`", "see the language reference", no)
    if name is None:
        err("LA100", "expected `mixer NAME` first", "start with `mixer MyMixer`", 1)
        return None, diags
    if "state" not in fields:
        err("LA301", "a mixer needs a `state` line", "add `state delta`", 1)
    if fields["beta"] == 2 and fields.get("state") not in ("delta", "householder", "dplr"):
        diags.append(ToyDiagnostic("LA410", "warning", "beta 2 has no effect without a delta "
                                   "transition", "remove `beta 2`", 1, 1))
    if any(d.severity == "error" for d in diags):
        return None, diags
    program = ToyProgram(name, fields["state"], fields["gate"], fields["heads"], fields["dim"],
                         fields["beta"], tuple(paths) or ("memory",))
    return program, diags


def toy_check(source: str) -> list[ToyDiagnostic]:
    return toy_parse(source)[1]


def toy_analyze(source: str) -> ToyAnalysis:
    import networkx as nx

    program, diags = toy_parse(source)
    if program is None:
        raise ValueError(f"toy_analyze on an invalid program: {diags[0].message}")
    g = nx.DiGraph()
    g.add_node(0, node=ToyNode("input"))
    g.add_node(1, node=ToyNode(f"state:{program.state}:beta{program.beta}"))
    g.add_node(2, node=ToyNode(f"gate:{program.gate}"))
    g.add_edges_from([(0, 1), (0, 2), (2, 1)])
    router = 3 + len(program.paths)
    g.add_node(router, node=ToyNode("router"))
    for i, path in enumerate(sorted(program.paths)):
        g.add_node(3 + i, node=ToyNode(f"path:{path}"))
        g.add_edge(1 if path == "memory" else 0, 3 + i)
        g.add_edge(3 + i, router)
    g.add_node(router + 1, node=ToyNode("output"))
    g.add_edge(router, router + 1)
    canon = repr((program.state, program.gate, program.heads, program.dim, program.beta,
                  tuple(sorted(program.paths))))
    d = program.dim
    fir = sum(int(p.split()[1]) if len(p.split()) > 1 else 4 for p in program.paths
              if p.startswith(("fir", "conv")))
    flops = program.heads * (4 * d * d + 8 * d * len(program.paths) + 2 * d * fir)
    return ToyAnalysis(
        name=program.name,
        structural_hash=hashlib.sha256(canon.encode()).hexdigest()[:16],
        flops_per_token=flops,
        state_bytes=4 * program.heads * d * d,
        transition_classes=(program.state,) + (() if program.gate == "none" else ("gated",)),
        num_paths=len(program.paths),
        graph=g,
    )


def toy_source(name: str = "Delta", state: str = "delta", gate: str = "none", heads: int = 4,
               dim: int = 32, beta: int = 1, paths: tuple[str, ...] = ("memory",)) -> str:
    lines = [f"mixer {name}", f"state {state}"]
    if gate != "none":
        lines.append(f"gate {gate}")
    lines += [f"heads {heads}", f"dim {dim}"]
    if beta != 1:
        lines.append(f"beta {beta}")
    lines += [f"path {p}" for p in paths]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- toy evaluation


def toy_fitness(source: str) -> float:
    """A made-up landscape: gates, delta rules, FIR paths and beta 2 help; size costs a bit."""
    program, _ = toy_parse(source)
    assert program is not None
    score = {"identity": -0.3, "scalar": -0.2, "diagonal": -0.1, "delta": 0.0, "dplr": 0.02,
             "householder": 0.03}[program.state]
    score += {"none": 0.0, "scalar": 0.04, "diagonal": 0.05}[program.gate]
    score += 0.03 * (program.beta == 2)
    firs = [p for p in program.paths if p.startswith("fir")]
    score += 0.02 * min(len(firs), 2) - 0.015 * max(0, len(program.paths) - 3)
    score -= 0.02 * abs(math.log2(program.dim / 32))
    return round(score, 6)


def toy_evaluate(job: EvalJob) -> EvalResult:
    """The fake evaluation for the loop tests; optional logging and delay via environment."""
    log = os.environ.get("LINARCH_TOY_EVAL_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"start {os.getpid()} {job.key}\n")
    time.sleep(float(os.environ.get("LINARCH_TOY_EVAL_SLEEP", "0")))
    base = toy_fitness(job.source)
    stage_bonus = 0.0 if job.stage == "smoke" else 0.001
    per_seed = [base + stage_bonus + 0.002 * ((s * 7919) % 5 - 2) for s in job.seeds]
    mean = sum(per_seed) / len(per_seed)
    half = 0.004
    if log:
        with open(log, "a") as f:
            f.write(f"done {os.getpid()} {job.key}\n")
    return EvalResult(
        score=mean, ci_low=mean - half, ci_high=mean + half,
        verdict="better" if mean - half > 0 else ("worse" if mean + half < 0 else "tie"),
        metrics={"mqar_acc": 0.8 + mean, "baseline_mqar_acc": 0.8, "loss": 2.0 - mean},
        seeds=tuple(job.seeds), candidate_per_seed=tuple(0.8 + v for v in per_seed),
        baseline_per_seed=tuple(0.8 for _ in per_seed),
        curves={f"seed {s}": ((100, 0.1), (200, 0.5 + v)) for s, v in zip(job.seeds, per_seed)},
    )


def noisy_evaluate(job: EvalJob) -> EvalResult:
    """The toy landscape seen through seeds, as racing sees a real one: on seed s the paired
    difference to DeltaNet is toy_fitness plus Gaussian noise (SD LINARCH_TOY_NOISE, default
    0.02) drawn from (program, seed), so a program trained again on a seed gets the same value,
    as from the run cache; mean and 95% t interval as `compare` reports them. Every job's
    seeds are logged to LINARCH_TOY_EVAL_LOG when it is set."""
    from linarch.evaluation.stats import t_quantile

    log = os.environ.get("LINARCH_TOY_EVAL_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"seeds {job.key} {','.join(map(str, job.seeds))}\n")
    sd = float(os.environ.get("LINARCH_TOY_NOISE", "0.02"))
    true = toy_fitness(job.source)
    digest = hashlib.sha256(job.source.encode()).hexdigest()[:16]
    diffs = [true + random.Random(f"{digest}:{s}").gauss(0.0, sd) for s in job.seeds]
    n = len(diffs)
    mean = sum(diffs) / n
    if n > 1:
        spread = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        half = t_quantile(0.975, n - 1) * spread / math.sqrt(n)
    else:
        half = math.nan
    verdict = "better" if mean - half > 0 else ("worse" if mean + half < 0 else "tie")
    return EvalResult(score=mean, ci_low=mean - half, ci_high=mean + half, verdict=verdict,
                      metrics={"acc": 0.8 + mean}, seeds=tuple(job.seeds),
                      candidate_per_seed=tuple(0.8 + d for d in diffs),
                      baseline_per_seed=tuple(0.8 for _ in diffs))


def cost_evaluate(job: EvalJob) -> EvalResult:
    """A synthetic score of a real program from the real compiler's numbers (less state and
    FLOPs is better): the loop end to end on real programs without training anything."""
    import linarch

    a = linarch.analyze(job.source)
    score = -1e-9 * a.flops_per_token - 1e-8 * a.state_bytes
    return EvalResult(score, score - 1e-3, score + 1e-3, "tie", {"flops": a.flops_per_token})


def toy_evaluate_crashing(job: EvalJob) -> EvalResult:
    """Crashes (segfault) on programs with a `conv` path, raises on `value` paths."""
    if "path conv" in job.source:
        segfault()
    if "path value" in job.source:
        raise RuntimeError("toy evaluation refuses value paths")
    return toy_evaluate(job)


# --------------------------------------------------------------------------- toy proposer


class ToyMutationProposer:
    """An offline proposer: one random typed mutation of the first parent (no LLM), seeded by
    the candidate's index like the real one (so a resumed run proposes the same)."""

    def __init__(self, seed: int | None = None):
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
        self.count = 0

    def propose(self, request):
        from linarch.search.proposer import Proposal

        parents = request.parents
        self.rng = random.Random(f"{self.seed}:{request.index}")
        self.count += 1
        program, _ = toy_parse(parents[0].source)
        assert program is not None
        choice = self.rng.randrange(6)
        state, gate, dim, beta = program.state, program.gate, program.dim, program.beta
        paths = list(program.paths)
        if choice == 0:
            state = self.rng.choice(STATE_CLASSES)
        elif choice == 1:
            gate = self.rng.choice(GATES)
        elif choice == 2:
            paths.append(self.rng.choice(["fir 3", "fir 31", "fir 63", "value", "conv 4"]))
        elif choice == 3 and len(paths) > 1:
            paths.pop(self.rng.randrange(len(paths)))
        elif choice == 4:
            dim = self.rng.choice([16, 32, 64])
        else:
            beta = 3 - beta
        name = f"Mut{request.index}"
        source = toy_source(name, state, gate, program.heads, dim, beta, tuple(paths))
        return Proposal(source=source, motivation=f"mutation {choice} of {parents[0].id}",
                        origin="mutation")


def build_toy_proposer(context: Any) -> ToyMutationProposer:
    return ToyMutationProposer(seed=context.config.run.seed)


def toy_vet(job: Any) -> Any:
    """The toy compiler's vetting: its costs at the declared defaults, and a fingerprint of
    what the toy program computes. `beta 2` does nothing without a delta-family state (the
    toy checker warns so), so `state scalar` with and without it compute the same function:
    a rewrite, with another hash and another graph."""
    from linarch.search.vet import VetResult

    program, _ = toy_parse(job.source)
    assert program is not None
    a = toy_analyze(job.source)
    beta = program.beta if program.state in ("delta", "householder", "dplr") else 1
    key = repr((program.state, program.gate, program.dim, program.heads, beta,
                tuple(sorted(program.paths))))
    digest = hashlib.sha256(key.encode()).digest()
    fingerprint = tuple((b - 127.5) / 127.5 for b in digest[:16])
    facts = {"task": "toy recall", "metric": "mqar_acc", "higher_is_better": True,
             "stages": " -> ".join(job.stages), "shape": "a toy model"}
    return VetResult((("dim", program.dim),), a.flops_per_token, a.state_bytes, fingerprint,
                     facts)


class InlineExecutor:
    """Runs each job synchronously inside the test process when `wait` is called: the
    executor interface without processes, so loop-logic tests are fast and deterministic.
    (The real executors are tested in test_search_executor.py and the loop end-to-end.)"""

    def __init__(self, workers: int = 2):
        from linarch.search.sandbox import Limits

        self.workers = workers
        self._queue: list[tuple[str, Any, tuple[Any, ...]]] = []
        self.submitted: list[str] = []
        self.limits = Limits(time_s=100.0)  # the executor's own, as the real ones hold them
        self.limits_of: dict[str, Any] = {}  # a job's limits, where it was given its own

    @property
    def free_slots(self) -> int:
        return max(0, self.workers - len(self._queue))

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, job_id, fn, *args, limits=None) -> None:
        self._queue.append((job_id, fn, args))
        self.submitted.append(job_id)
        if limits is not None:
            self.limits_of[job_id] = limits

    def wait(self, timeout=None):
        from linarch.search.sandbox import JobResult, Outcome

        done, self._queue = self._queue, []
        results = []
        for job_id, fn, args in done:
            try:
                results.append(JobResult(job_id, Outcome.OK, fn(*args)))
            except Exception as err:  # the sandbox reports a raise as ERROR too
                results.append(JobResult(job_id, Outcome.ERROR, error=repr(err)))
        return results

    def shutdown(self) -> None:
        self._queue.clear()


# --------------------------------------------------------------------------- executor jobs


def add(a: int, b: int) -> int:
    return a + b


def _restore_slowly(seconds: float, value: int) -> int:
    time.sleep(seconds)
    return value


class SlowToUnpickle:
    """An argument that takes `seconds` to unpickle: start-up time of a job, made explicit."""

    def __init__(self, seconds: float, value: int):
        self.seconds, self.value = seconds, value

    def __reduce__(self):
        return (_restore_slowly, (self.seconds, self.value))


def check_hanging_on_towers(source: str) -> list:
    """`linarch.check`, except that it never finishes on a tower of powers. The real front end
    hung on the issue's `2 ** 2 ** 2 ** 2 ** 2 ** 2` until constant folding was bounded (it is
    now refused at once, LA118); this stands in for whatever program hangs a compiler next, so
    that the guard's deadline is still tested end to end."""
    if "2 ** 2 ** 2" in source:
        time.sleep(3600)
    import linarch

    return linarch.check(source)


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def write_pid_and_sleep(path: str, seconds: float) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)


def spawn_grandchild_and_sleep(path: str, seconds: float) -> None:
    """Start a grandchild process, record both pids, then hang."""
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
    Path(path).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(seconds)


def allocate_mb(total_mb: int, chunk_mb: int = 16, pause_s: float = 0.005) -> int:
    """Touch memory a chunk at a time (so the resident size really grows)."""
    chunks = []
    for _ in range(total_mb // chunk_mb):
        chunks.append(b"\x01" * (chunk_mb * 2**20))
        time.sleep(pause_s)
    return len(chunks)


def segfault() -> None:
    ctypes.string_at(0)


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def exit_hard(code: int) -> None:
    os._exit(code)


def return_unpicklable() -> Any:
    return lambda: None


def environment_seen() -> dict[str, str]:
    """What a job can read of its environment: os.environ and the exec-time block."""
    with open("/proc/self/environ", "rb") as f:
        initial = f.read().decode("utf-8", "replace")
    return {"environ": "\n".join(sorted(os.environ)), "initial": initial}


class RunsCodeWhenUnpickled:
    """A value whose unpickling would run a command in the process that reads it."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/linarch-pwned",))


def return_code_running_value() -> Any:
    return RunsCodeWhenUnpickled()


def return_eval_result() -> EvalResult:
    return EvalResult(0.25, -float("inf"), 0.5, "inconclusive", {"acc": 0.75}, (0, 1), "x")
