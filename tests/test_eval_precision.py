"""Seeds until the interval is narrow enough: `SeedSchedule.until_precision` and `--precision`.

A user who needs a half-width of 0.03 should get 0.03 (or the cap, said so), at the number of
seeds the measured spread needs, and an interval that still covers at its stated level.
"""

from __future__ import annotations

import random

import pytest
from test_eval_compare import budget, quiet, spec

from linarch.evaluation.cli import train_main
from linarch.evaluation.compare import _rule, compare
from linarch.evaluation.presets import Preset, TaskKind, budget_for
from linarch.evaluation.report import comparison_json, summary
from linarch.evaluation.seeds import SeedSchedule
from linarch.evaluation.stats import paired_comparison
from linarch_testing import mixers as mt


def interval(diffs, confidence=0.975, min_effect=0.0):
    return paired_comparison("accuracy", True, list(diffs), [0.0] * len(diffs), confidence,
                             min_effect)


def test_a_precision_schedule_stops_on_the_width_whatever_the_interval_says():
    schedule = SeedSchedule.until_precision(0.03, start=5, cap=40)
    assert schedule.seeds == tuple(range(40)) and schedule.looks == (5, 40)
    decided_but_wide = interval([0.30, 0.15, 0.25, 0.10, 0.35])
    assert decided_but_wide.decided and decided_but_wide.half_width > 0.03
    assert schedule.next_look(5, decided_but_wide) is not None  # a verdict does not stop it
    narrow = interval([0.010, 0.012, 0.011, 0.009, 0.010])
    assert narrow.half_width <= 0.03 and schedule.next_look(5, narrow) is None
    assert schedule.next_look(40, decided_but_wide) is None  # the cap does
    assert schedule.next_look(5, None) is None  # no baseline: no interval to narrow


def test_the_next_look_goes_halfway_to_the_seeds_the_spread_needs():
    schedule = SeedSchedule.until_precision(0.03, start=5, cap=40, step=2)
    # an SD of 0.05: a 97.5% half-width of 0.03 needs 17 seeds; from 5, halfway is 11
    look = interval([0.05 * z for z in (-1.26, -0.63, 0.0, 0.63, 1.26)])
    assert look.half_width == pytest.approx(3.495 * 0.0498 / 5 ** 0.5, rel=1e-3)
    assert schedule.next_look(5, look) == 11
    # nearly there (0.0305 after 16 seeds): at least `step` more, never past the cap
    close = interval([0.0475, -0.0475] * 8)
    assert 0.03 < close.half_width < 0.031 and schedule.next_look(16, close) == 18
    capped = SeedSchedule.until_precision(0.001, cap=8)  # needs hundreds: halfway to the cap
    assert capped.next_look(5, look) == 7 and capped.next_look(7, look) == 8


def test_a_verdict_schedule_still_stops_on_a_decision_and_otherwise_walks_its_looks():
    schedule = SeedSchedule((0, 1, 2, 3, 4, 5, 6, 7), (5, 8))
    assert schedule.next_look(5, interval([0.30, 0.15, 0.25, 0.10, 0.35])) is None
    assert schedule.next_look(5, interval([0.1, -0.1, 0.05, -0.05, 0.0])) == 8
    assert schedule.next_look(5, None) == 8  # no baseline: every look is trained


@pytest.mark.parametrize("bad", [
    lambda: SeedSchedule.until_precision(0.0),
    lambda: SeedSchedule.until_precision(float("nan")),
    lambda: SeedSchedule.until_precision(0.03, start=1),
    lambda: SeedSchedule.until_precision(0.03, start=9, cap=8),
    lambda: SeedSchedule((0, 1), (2,), step=0),
])
def test_impossible_precision_schedules_are_refused(bad):
    with pytest.raises(ValueError):
        bad()


def _coverage(sigma: float, precision: float, confidence: float, reps: int) -> float:
    """How often the width-stopped interval covers the true difference (0), normal seeds."""
    rng = random.Random(20261207)
    schedule = SeedSchedule.until_precision(precision, cap=40)
    hits = 0
    for _ in range(reps):
        diffs: list[float] = []
        target = schedule.looks[0]
        while target is not None:
            diffs += [rng.gauss(0.0, sigma) for _ in range(target - len(diffs))]
            stats = interval(diffs, confidence)
            target = schedule.next_look(len(diffs), stats)
        hits += stats.ci_low <= 0.0 <= stats.ci_high
    return hits / reps


@pytest.mark.parametrize("sigma", [0.03, 0.05, 0.076])  # the paired SDs measured on the proxy
def test_width_stopped_intervals_keep_their_coverage_at_one_minus_alpha_over_two(sigma):
    """Stopping when the spread looks small narrows the interval below its level (93-94%
    at 95%); `compare` therefore computes it at 1 - alpha/2, which keeps 1 - alpha."""
    proxy = budget_for(TaskKind.MQAR, Preset.PROXY)
    confidence = _rule(proxy, SeedSchedule.until_precision(0.03)).confidence
    assert confidence == pytest.approx(0.975)
    assert _coverage(sigma, 0.03, confidence, 2000) >= 0.94  # 1 - alpha, less 2 MC errors
    assert _coverage(sigma, 0.03, 0.95, 2000) < 0.94  # why: at 95% it falls short


def test_every_preset_gets_one_minus_alpha_over_two_under_a_precision_schedule():
    schedule = SeedSchedule.until_precision(0.03)
    for task in TaskKind:
        for preset in Preset:
            b = budget_for(task, preset)
            assert _rule(b, schedule).confidence == pytest.approx(0.975)
            assert _rule(b, b.schedule) is b.rule


@pytest.fixture()
def _test_mixers():
    with mt.install():
        yield


def test_compare_adds_seeds_until_the_half_width_or_the_cap_and_says_which(_test_mixers):
    b = budget(grid=False)
    loose = compare(spec("a"), spec("c", mt.TestSoftmaxAttention), b,
                    SeedSchedule.until_precision(10.0, start=3, cap=6), log=quiet)
    assert [lk.pairs for lk in loose.looks] == [3] and loose.stats.confidence == 0.975
    assert "at most the 10 asked" in summary(loose)
    tight = compare(spec("a"), spec("c", mt.TestSoftmaxAttention), b,
                    SeedSchedule.until_precision(1e-9, start=3, cap=6, step=2), log=quiet)
    assert [lk.pairs for lk in tight.looks] == [3, 5, 6] and tight.seeds == tuple(range(6))
    assert "over the 1e-09 asked: the cap (6) stopped it" in summary(tight)
    assert comparison_json(tight)["precision"] == 1e-9
    # the first look's runs are the same runs either way
    assert [s.value for s in loose.scores] == [s.value for s in tight.scores[:6]]


@pytest.mark.parametrize(("extra", "message"), [
    (["--seeds", "5"], "pass one"),
    (["--no-baseline"], "drop --no-baseline"),
    (["--max-seeds", "3"], "at least 5"),
    (["--precision", "inf"], "positive half-width"),
])
def test_precision_flags_that_contradict_each_other_are_refused(extra, message, capsys):
    args = ["examples/linear_attention.lin", "--preset", "tiny", "--precision", "0.03", *extra]
    assert train_main(args) == 2
    assert message in capsys.readouterr().err


def test_the_schedule_is_recorded_with_the_comparison(_test_mixers):
    result = compare(spec("a"), spec("a"), budget(grid=False), [0, 1], log=quiet)
    assert result.schedule == SeedSchedule.fixed([0, 1])
    assert comparison_json(result)["precision"] is None
