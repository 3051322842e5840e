"""The calibrated MQAR proxy is pinned: a change to it is a decision, never an accident.

docs/evaluation.md's calibration table was measured under one budget definition, identified by
its key (a hash of the data settings, model, training budget and learning-rate grid). Changing
any of them changes the key and fails this test: then rerun `linarch calibrate --write
docs/evaluation.md`, and update the pinned definition and key here together.
"""

from __future__ import annotations

from pathlib import Path

from linarch.evaluation.calibration import markers
from linarch.evaluation.cli import build_parser
from linarch.evaluation.mqar import MQARSetting
from linarch.evaluation.presets import Hyper, Preset, TaskKind, budget_for
from linarch.evaluation.problems import ModelShape
from linarch.evaluation.seeds import SeedSchedule
from linarch.evaluation.stats import DecisionRule
from linarch.search.config import loads_config
from linarch.search.evaluate import Stage, _schedule, _task_and_preset
from linarch.search.records import EvalJob

ROOT = Path(__file__).resolve().parent.parent
PROXY_KEY = "afddccccf4f26c39"


def proxy():
    return budget_for(TaskKind.MQAR, Preset.PROXY)


def test_the_proxy_is_the_calibrated_definition():
    budget = proxy()
    (problem, config), = budget.problems
    assert problem.setting == MQARSetting(vocab_size=256, seq_len=64, num_kv_pairs=4)
    assert problem.tests == (MQARSetting(vocab_size=256, seq_len=128, num_kv_pairs=16),
                             MQARSetting(vocab_size=256, seq_len=128, num_kv_pairs=32))
    assert problem.shape == ModelShape(64, 2, 2, use_mlp=False, block_kinds=("base_conv",
                                                                             "mixer"))
    assert (config.steps, config.batch_size, config.weight_decay) == (2000, 32, 0.1)
    assert problem.num_train == config.steps * config.batch_size  # every example fresh
    assert (problem.num_test, problem.num_valid) == (500, 250)
    assert budget.grid == (Hyper(3e-3), Hyper(1e-2))
    assert budget.selection_seeds == (0,)  # seed 0 chooses each arm's rate on validation
    assert budget.schedule == SeedSchedule(tuple(range(8)), (5, 8))
    # Two looks at 1 - 0.05/2 each (Bonferroni): under 5% false verdicts over the schedule.
    assert budget.rule == DecisionRule(confidence=1 - 0.05 / 2, min_effect=0.02)
    assert budget.tolerance == 0.05
    assert budget.key == PROXY_KEY


def test_the_documented_calibration_is_of_this_proxy():
    text = (ROOT / "docs" / "evaluation.md").read_text()
    start, end = markers(TaskKind.MQAR)
    block = text.split(start, 1)[1].split(end)[0]
    assert f"budget key `{proxy().key}`" in block


def test_train_and_the_search_default_to_the_proxy():
    args = build_parser().parse_args(["x.lin"])
    assert (args.task, args.preset) == ("mqar", "proxy")
    config = loads_config("")
    assert config.run.preset == "proxy" and "mqar" in [s.stage for s in config.cascade]
    task, preset = _task_and_preset(EvalJob("k", "c", "", "mqar", config.run.preset, (0, 1, 2)),
                                    Stage.MQAR)
    assert budget_for(task, preset).key == proxy().key


def test_the_search_seeds_are_the_first_look_of_the_proxy_schedule():
    job = EvalJob("k", "c", "", "mqar", "proxy", (0, 1, 2))
    schedule = _schedule(job, proxy())
    assert schedule.seeds[:3] == (0, 1, 2) and schedule.looks[0] == 3
    assert schedule.cap == proxy().schedule.cap
    odd = _schedule(EvalJob("k", "c", "", "mqar", "proxy", (7, 9)), proxy())
    assert odd.seeds[:2] == (7, 9) and odd.looks[0] == 2 and len(set(odd.seeds)) == odd.cap
