"""The training loop: learning, exact reproducibility on CPU, schedules, outcomes, checkpoints."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from linarch.evaluation.mixers import MixerSpec
from linarch.evaluation.mqar import MQARSetting
from linarch.evaluation.problems import ModelShape, MQARProblem
from linarch.evaluation.results import Outcome
from linarch.evaluation.trainer import TrainConfig, train_problem
from linarch.models.modeling import LinarchForCausalLM
from linarch_testing import mixers as mt

SHAPE = ModelShape(32, 2, 2, use_mlp=False)


@pytest.fixture(autouse=True)
def _test_mixers():
    with mt.install():
        yield


def small_problem(**kw) -> MQARProblem:
    setting = MQARSetting(vocab_size=128, seq_len=32, num_kv_pairs=4)
    return MQARProblem(setting, SHAPE, num_train=kw.get("num_train", 8000),
                       num_test=kw.get("num_test", 256))


def test_mqar_is_learned_far_above_chance():
    problem = small_problem()
    config = TrainConfig(steps=250, batch_size=32, lr=1e-2, eval_every=125)
    result, _ = train_problem(problem, mt.spec("linear_attention"), SHAPE, config)
    assert result.outcome is Outcome.OK and result.steps == 250
    assert result.metrics["accuracy"] > 0.4  # chance is 1/64
    assert [p.step for p in result.curves.eval["accuracy"]] == [125, 250]
    assert result.timings.tokens_seen == 250 * 32 * 32


def test_same_seed_same_metric_bit_for_bit():
    problem = small_problem(num_train=512, num_test=64)
    config = TrainConfig(steps=15, batch_size=16, lr=3e-3, seed=4)
    first, _ = train_problem(problem, mt.spec("linear_attention"), SHAPE, config)
    second, _ = train_problem(problem, mt.spec("linear_attention"), SHAPE, config)
    assert first.metrics == second.metrics
    assert first.curves.train_loss == second.curves.train_loss
    other, _ = train_problem(problem, mt.spec("linear_attention"), SHAPE, replace(config, seed=5))
    assert other.metrics["loss"] != first.metrics["loss"]


def test_learning_rate_warms_up_then_follows_a_cosine():
    config = TrainConfig(steps=100, batch_size=1, lr=1.0, warmup_fraction=0.1, min_lr_ratio=0.1)
    assert config.lr_at(0) == pytest.approx(0.1) and config.lr_at(9) == pytest.approx(1.0)
    assert config.lr_at(10) == pytest.approx(1.0)
    assert config.lr_at(55) == pytest.approx(0.1 + 0.9 * 0.5)
    assert config.lr_at(99) == pytest.approx(0.1, abs=1e-3)
    lrs = [config.lr_at(s) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


class Sabotaged(MQARProblem):
    """A problem whose loss misbehaves from a given step on."""

    def __init__(self, mode: str, at: int) -> None:
        setting = MQARSetting(vocab_size=128, seq_len=32, num_kv_pairs=4)
        super().__init__(setting, SHAPE, num_train=256, num_test=32)
        self.mode, self.at, self.calls = mode, at, 0

    def loss(self, model, batch):
        loss, aux = super().loss(model, batch)
        self.calls += 1
        if self.calls > self.at:
            if self.mode == "nan":
                loss = loss * float("nan")
            elif self.mode == "grow":
                loss = loss * 100.0
            elif self.mode == "above_chance":
                loss = loss + 1.5  # worse than a uniform guess, but never 4x the first loss
            elif self.mode == "raise":
                raise ValueError("the mixer broke")
        return loss, aux


@pytest.mark.parametrize("mode,outcome", [("nan", Outcome.NAN), ("grow", Outcome.DIVERGED),
                                          ("above_chance", Outcome.DIVERGED),
                                          ("raise", Outcome.ERROR)])
def test_failures_end_with_their_outcome(mode, outcome):
    config = TrainConfig(steps=40, batch_size=8, lr=1e-3)
    result, _ = train_problem(Sabotaged(mode, at=12), mt.spec("linear_attention"), SHAPE, config)
    assert result.outcome is outcome
    assert result.steps < 40 and result.error
    assert "accuracy" not in result.metrics
    if mode == "raise":
        assert "the mixer broke" in result.error
    if mode == "above_chance":  # the rule is relative to chance (ln V), not to the first loss
        assert "above chance" in result.error


def test_limits_stop_training():
    problem = small_problem(num_train=256, num_test=32)
    spec = mt.spec("linear_attention")
    base = TrainConfig(steps=50, batch_size=8, lr=1e-3)
    timed, _ = train_problem(problem, spec, SHAPE, replace(base, time_limit_s=0.0))
    assert timed.outcome is Outcome.TIMEOUT and timed.steps == 1
    assert math.isfinite(timed.metrics["accuracy"])  # the partial model is still evaluated
    memory, _ = train_problem(problem, spec, SHAPE, replace(base, memory_limit_mb=1.0))
    assert memory.outcome is Outcome.OOM and memory.steps == 1


class Unbuildable(torch.nn.Module):
    def __init__(self, hidden_size, num_heads, layer_idx=None, **kwargs):
        super().__init__()
        raise RuntimeError("cannot build")


def test_a_mixer_that_does_not_build_is_an_error_not_an_exception():
    spec = MixerSpec("bad", "test-mixer bad", Unbuildable, 0, 0, "x", "y")
    result, model = train_problem(small_problem(num_train=64, num_test=8), spec, SHAPE,
                                  TrainConfig(steps=5, batch_size=4, lr=1e-3))
    assert result.outcome is Outcome.ERROR and model is None and "cannot build" in result.error


def test_checkpoints_hold_the_trained_model(tmp_path):
    problem = small_problem(num_train=256, num_test=32)
    config = TrainConfig(steps=6, batch_size=8, lr=1e-3, checkpoint_every=3)
    result, model = train_problem(problem, mt.spec("linear_attention"), SHAPE, config,
                                  checkpoint_dir=tmp_path / "ckpt")
    state = json.loads((tmp_path / "ckpt" / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["config"]["lr"] == 1e-3
    loaded = LinarchForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    data = problem.make_data(config.seed)
    assert problem.evaluate(loaded, data, torch.device("cpu")) == pytest.approx(
        {k: result.metrics[k] for k in ("accuracy", "loss")})
