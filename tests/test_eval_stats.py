"""Paired t-intervals and verdicts, with scipy as the oracle for the t distribution."""

from __future__ import annotations

import math

import pytest

from linarch.evaluation.stats import Verdict, paired_comparison, t_cdf, t_quantile

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


@pytest.mark.parametrize("x, y", [
    ([0.9, 0.7, 0.8, 0.1, 0.5], [1.0, 0.8, 0.79, 0.53, 0.73]),
    ([0.98, 0.74, 0.52, 0.6, 0.3, 0.2], [1.0, 0.79, 0.89, 0.89, 0.53, 0.7]),  # ties in y
    ([1, 2, 2, 3], [4, 3, 3, 1]),
])
def test_rank_correlations_match_scipy(x, y):
    from linarch.evaluation.calibration import kendall_tau_b, spearman_rho

    assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_calibration_block_is_replaced_in_place(tmp_path):
    from linarch.evaluation.calibration import markers, write_block
    from linarch.evaluation.presets import TaskKind

    start, end = markers(TaskKind.LM)
    doc = tmp_path / "d.md"
    doc.write_text(f"# t\n{start}\nold\n{end}\ntail\n")
    write_block(doc, "new table", TaskKind.LM)
    assert doc.read_text() == f"# t\n{start}\nnew table\n{end}\ntail\n"
    with pytest.raises(ValueError, match="no"):
        write_block(doc, "x", TaskKind.MQAR)


def test_a_calibration_runs_each_reference_at_its_published_configuration(tmp_path):
    """End to end on the tiny budget: the reference set through `compare`, a published
    configuration (Mamba2 at d_state 8) applied, the controls and an A/A repeat, the table."""
    from pathlib import Path

    import torch

    from linarch.evaluation.calibration import Reference, calibrate, table_markdown
    from linarch.evaluation.presets import Preset, TaskKind, budget_for
    from linarch.evaluation.store import ExperimentStore

    torch.set_num_threads(1)
    root = Path(__file__).resolve().parent.parent
    refs = (Reference("DeltaNet", "examples/deltanet.lin", 0.79, "s", role="baseline"),
            Reference("Mamba2, d_state 8", "examples/mamba2.lin", 0.52, "s",
                      widths=(("state_size", 8),)),
            Reference("linear attention", "examples/linear_attention.lin", 0.7, "s",
                      role="worse"))
    cal = calibrate(budget_for(TaskKind.MQAR, Preset.TINY), (0, 1),
                    ExperimentStore(tmp_path / "c.sqlite"), references=refs, root=root,
                    aa_repeats=1, workers=1, log=lambda line: None)
    rows = {row.reference.label: row for row in cal.rows}
    assert set(rows) == {r.label for r in refs} and all(len(r.values) == 2 for r in rows.values())
    mamba = next(iter(rows["Mamba2, d_state 8"].comparison.matches.values()))
    assert dict(mamba.candidate_shape.mixer_kwargs) == {"state_size": 8}
    assert [ref.label for ref, _ in cal.controls] == ["linear attention"] and len(cal.aa) == 1
    table = table_markdown(cal)
    assert "| Mamba2, d_state 8 |" in table and "Kendall's tau-b" in table
    assert "configuration of its published number" in table
