"""compare(): the run cache, sequential seeds, and failures counted rather than dropped."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from linarch.evaluation.compare import Role, compare
from linarch.evaluation.mqar import MQARSetting
from linarch.evaluation.presets import Budget, Preset, TaskKind, budget_for
from linarch.evaluation.problems import ModelShape, MQARProblem
from linarch.evaluation.results import Outcome
from linarch.evaluation.run_cache import RunCache
from linarch.evaluation.seeds import SeedSchedule
from linarch.evaluation.stats import DecisionRule, Verdict
from linarch.evaluation.store import ExperimentStore
from linarch.evaluation.trainer import TrainConfig
from linarch_testing import mixers as mt

SHAPE = ModelShape(32, 2, 2, use_mlp=False, block_kinds=("base_conv", "mixer"))
CURRENT_SEED = [0]


@pytest.fixture(autouse=True)
def _test_mixers():
    with mt.install():
        yield


class SeedAware(MQARProblem):
    """Tells the sabotaged mixers below which seed is being trained."""

    def make_data(self, seed):
        CURRENT_SEED[0] = seed
        return super().make_data(seed)


class Broken(mt.TestLinearAttention):
    """A candidate that builds and runs a forward pass (so its width can be matched) but raises
    as soon as it trains: every run ends in ERROR."""

    def forward(self, *args, **kwargs):
        if torch.is_grad_enabled():
            raise RuntimeError("this mixer is broken")
        return super().forward(*args, **kwargs)


class NaNOnSeed1(mt.TestLinearAttention):
    """A baseline whose output is NaN while seed 1 trains (and only then)."""

    def forward(self, *args, **kwargs):
        out, state, cache = super().forward(*args, **kwargs)
        return (out * float("nan") if CURRENT_SEED[0] == 1 else out), state, cache


def spec(name: str, cls=None):
    base = mt.spec("linear_attention")
    return base if cls is None else replace(base, name=name, layer_cls=cls,
                                            structural_hash=name, code_hash=name)


def budget(steps: int = 6, grid=True, batch: int = 8, pairs: int = 8, **changes) -> Budget:
    tiny = budget_for(TaskKind.MQAR, Preset.TINY)
    problem = SeedAware(MQARSetting(vocab_size=128, seq_len=32, num_kv_pairs=4), SHAPE,
                        num_train=steps * batch, num_test=32,
                        tests=(MQARSetting(vocab_size=128, seq_len=32, num_kv_pairs=pairs),),
                        num_valid=16)
    config = TrainConfig(steps=steps, batch_size=batch, lr=3e-3)
    return replace(tiny, problems=((problem, config),), grid=tiny.grid if grid else (),
                   **changes)


def quiet(_: str) -> None:
    pass


def test_finished_runs_are_reused_and_more_seeds_train_only_the_new_ones(tmp_path):
    store = ExperimentStore(tmp_path / "s.db")
    cache = RunCache(store)
    b = budget()
    first = compare(spec("a"), spec("b", NaNOnSeed1), b, [0, 2], store, cache, log=quiet)
    # every seed tries both learning rates (and keeps the better on validation), each arm
    assert first.cost.candidate_runs == first.cost.baseline_runs == 4
    assert {ch.seed for ch in first.choices} == {0, 2}
    other = compare(spec("c", mt.TestLinearAttention), spec("b", NaNOnSeed1), b, [0, 2, 3],
                    store, cache, log=quiet)
    assert other.cost.baseline_runs == 2 and other.cost.baseline_cached == 4
    again = compare(spec("a"), spec("b", NaNOnSeed1), b, [0, 2], store, cache, log=quiet)
    assert again.cost.runs_trained == 0
    assert [s.value for s in again.scores] == [s.value for s in first.scores]
    # a changed budget definition misses the cache: nothing is reused across definitions
    longer = compare(spec("a"), spec("b", NaNOnSeed1), budget(steps=7), [0], store, cache,
                     log=quiet)
    assert longer.cost.baseline_runs == 2 and longer.cost.baseline_cached == 0
    assert store.count("experiments") == 4 and cache.count(b.key) == 16


def test_a_program_compared_with_itself_trains_each_run_once():
    # a search's seed program that is also its baseline: the two arms are the same runs
    result = compare(spec("a"), spec("a"), budget(), [0, 1], None, None, log=quiet)
    assert result.cost.candidate_runs == 4  # 2 seeds x 2 learning rates
    assert result.cost.baseline_runs == 0 and result.cost.baseline_cached == 4
    assert result.stats.mean_difference == 0.0
    assert [s.value for s in result.role_scores(Role.CANDIDATE)] == \
        [s.value for s in result.role_scores(Role.BASELINE)]


def test_a_grid_point_that_fails_is_not_kept_and_the_seed_still_counts():
    """NaN at one learning rate is the other rate's win, not a failed seed."""
    b = budget()
    b = replace(b, grid=(b.grid[0], replace(b.grid[1], lr=1e6)))
    c = compare(spec("a"), spec("b"), b, [0, 2], log=quiet)
    assert {r.result.outcome for r in c.runs if r.hyper.lr == 1e6} <= {Outcome.NAN,
                                                                       Outcome.DIVERGED}
    assert all(ch.chosen.lr != 1e6 for ch in c.choices)
    assert not any(s.failed for s in c.scores) and c.stats.pairs == 2


def test_a_failed_candidate_seed_is_a_loss_not_a_missing_pair(tmp_path):
    c = compare(spec("broken", Broken), spec("b"), budget(grid=False), [0, 2, 3], log=quiet)
    assert [s.outcome for s in c.role_scores(Role.CANDIDATE)] == [Outcome.ERROR] * 3
    assert all(s.value == 0.0 for s in c.role_scores(Role.CANDIDATE))
    assert c.stats.pairs == 3 and c.failures(Role.CANDIDATE) == 3


def test_a_failed_baseline_seed_is_retried_then_replaced_never_charged(tmp_path):
    store = ExperimentStore(tmp_path / "s.db")
    c = compare(spec("a"), spec("nan", NaNOnSeed1), budget(grid=False), [0, 1, 2], store,
                RunCache(store), log=quiet)
    assert c.seeds == (0, 2, 3) and c.excluded[0][0] == 1 and "nan" in c.excluded[0][1]
    assert c.stats.pairs == 3
    failed = [r for r in c.runs if r.role is Role.BASELINE and r.seed == 1]
    assert [r.result.outcome for r in failed] == [Outcome.NAN]
    assert not any(r.result.outcome is not Outcome.OK for r in c.runs if r.role is Role.CANDIDATE)


def test_sequential_seeds_stop_at_the_first_decided_look():
    """A candidate that always fails against one that learns: WORSE, decided at the first look
    of three seeds, so the schedule's other seeds are never trained."""
    b = budget(steps=250, batch=32, pairs=4, grid=False, rule=DecisionRule(min_effect=0.01),
               schedule=SeedSchedule.sequential(start=3, step=1, cap=6))
    b = replace(b, problems=tuple((p, replace(c, lr=1e-2)) for p, c in b.problems))
    c = compare(spec("broken", Broken), spec("b"), b, None, log=quiet)
    assert c.mean(Role.BASELINE) > 0.2, "the baseline must learn something in 250 steps"
    assert c.verdict is Verdict.WORSE and [lk.pairs for lk in c.looks] == [3]
    assert c.seeds == (0, 1, 2) and c.cost.baseline_runs == 3


def test_workers_train_in_other_processes_with_the_same_numbers(tmp_path):
    """Worker processes compile the mixer again from its source: real DSL here."""
    from linarch.api import example_path
    from linarch.evaluation.mixers import mixer_from_dsl

    b = budget(steps=3, grid=False)
    b = replace(b, problems=tuple((MQARProblem(p.setting, p.shape, p.num_train, p.num_test,
                                               tests=p.tests, num_valid=p.num_valid), c)
                                  for p, c in b.problems))
    delta = mixer_from_dsl(example_path("deltanet"))
    here = compare(delta, None, b, [0, 1], log=quiet)
    there = compare(delta, None, b, [0, 1], workers=2, log=quiet)
    assert [s.value for s in here.scores] == [s.value for s in there.scores]
    assert torch.get_num_threads() >= 1


def test_a_killed_comparison_leaves_no_worker_behind(tmp_path):
    """`kill` reaches only the process that runs `compare`; its spawned workers notice that
    their parent is gone and end, instead of waiting for work forever."""
    import os
    import signal
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing as mp, os, sys\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from linarch.evaluation.compare import exit_with_parent\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(1, mp_context=mp.get_context('spawn'),\n"
        "                               initializer=exit_with_parent, initargs=(os.getpid(),))\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    sys.stdin.read()\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    assert psutil.pid_exists(worker)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(worker) and psutil.Process(worker).status() != "zombie" \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == "zombie"
