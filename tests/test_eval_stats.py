"""Paired t-intervals and verdicts, with scipy as the oracle for the t distribution."""

from __future__ import annotations

import math

import pytest

from linarch.evaluation.stats import (
    Alternative,
    Verdict,
    paired_comparison,
    t_cdf,
    t_quantile,
)

stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 19, 100])
def test_t_distribution_matches_scipy(df):
    for p in (0.6, 0.9, 0.95, 0.975, 0.995, 0.05):
        assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-8)
    for t in (-3.0, -0.5, 0.0, 0.7, 2.5):
        assert t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), abs=1e-12)


def test_interval_is_the_students_t_interval_of_the_differences():
    cand, base = [0.81, 0.85, 0.79, 0.88], [0.78, 0.80, 0.80, 0.83]
    diffs = [c - b for c, b in zip(cand, base)]
    low, high = stats.t.interval(0.95, len(diffs) - 1, loc=sum(diffs) / 4,
                                 scale=stats.sem(diffs))
    c = paired_comparison("accuracy", True, cand, base)
    assert c.mean_difference == pytest.approx(sum(diffs) / 4)
    assert (c.ci_low, c.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert c.verdict is Verdict.INDISTINGUISHABLE and c.ci_low < 0 < c.ci_high


@pytest.mark.parametrize("cand, base", [
    ([0.81, 0.85, 0.79, 0.88], [0.78, 0.80, 0.80, 0.83]),
    ([1.9, 2.1, 2.0], [2.2, 2.3, 2.05]),
    ([0.5, 0.7], [0.4, 0.45]),
])
def test_p_values_are_scipys_paired_t_test(cand, base):
    c = paired_comparison("m", True, cand, base)
    assert c.p_value() == pytest.approx(stats.ttest_rel(cand, base).pvalue, rel=1e-8)
    assert c.p_value(Alternative.GREATER) == pytest.approx(
        stats.ttest_rel(cand, base, alternative="greater").pvalue, rel=1e-8)


def test_p_values_of_degenerate_pairs():
    assert paired_comparison("m", True, [1.0], [0.0]).p_value() == 1.0
    exact = paired_comparison("m", True, [1.0, 2.0], [0.5, 1.5])  # every difference 0.5
    assert exact.p_value() == 0.0 and exact.p_value(Alternative.GREATER) == 0.0
    assert paired_comparison("m", True, [0.5, 1.5], [1.0, 2.0]).p_value(Alternative.GREATER) == 1.0
    assert paired_comparison("m", True, [1.0, 2.0], [1.0, 2.0]).p_value() == 1.0


def test_verdict_follows_the_metric_direction():
    higher = paired_comparison("accuracy", True, [0.9, 0.91, 0.92], [0.8, 0.8, 0.81])
    assert higher.verdict is Verdict.BETTER and higher.ci_low > 0
    worse = paired_comparison("accuracy", True, [0.8, 0.8, 0.81], [0.9, 0.91, 0.92])
    assert worse.verdict is Verdict.WORSE
    loss_down = paired_comparison("val_loss", False, [2.0, 2.01, 2.02], [2.2, 2.2, 2.25])
    assert loss_down.verdict is Verdict.BETTER and loss_down.ci_high < 0
    loss_up = paired_comparison("val_loss", False, [2.2, 2.2, 2.25], [2.0, 2.01, 2.02])
    assert loss_up.verdict is Verdict.WORSE


def test_too_few_pairs_never_decide():
    one = paired_comparison("accuracy", True, [0.99], [0.1])
    assert one.verdict is Verdict.INDISTINGUISHABLE and math.isinf(one.ci_low)
    none = paired_comparison("accuracy", True, [], [])
    assert none.verdict is Verdict.INDISTINGUISHABLE and none.pairs == 0
    with pytest.raises(ValueError):
        paired_comparison("accuracy", True, [0.1, 0.2], [0.1])


def test_a_consistent_but_noisy_gain_is_not_called_better():
    # mean gain positive, but one seed reverses it: the interval spans zero
    c = paired_comparison("accuracy", True, [0.9, 0.9, 0.7], [0.8, 0.8, 0.8])
    assert c.mean_difference > 0 and c.verdict is Verdict.INDISTINGUISHABLE


def test_min_effect_keeps_tiny_differences_indistinguishable():
    cand, base = [0.811, 0.812, 0.813, 0.812], [0.80, 0.80, 0.80, 0.80]
    assert paired_comparison("accuracy", True, cand, base).verdict is Verdict.BETTER
    small = paired_comparison("accuracy", True, cand, base, min_effect=0.02)
    assert small.verdict is Verdict.INDISTINGUISHABLE and small.equivalent and small.decided
    big = paired_comparison("accuracy", True, [0.9, 0.91, 0.92], [0.8, 0.8, 0.81],
                            min_effect=0.02)
    assert big.verdict is Verdict.BETTER and not big.equivalent
