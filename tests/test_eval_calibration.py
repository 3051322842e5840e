"""Calibration: rank correlations, the documented block, and a calibration run end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from linarch.evaluation.calibration import (
    REFERENCES,
    Reference,
    calibrate,
    kendall_tau_b,
    markers,
    spearman_rho,
    table_markdown,
    write_block,
)
from linarch.evaluation.compare import Role
from linarch.evaluation.presets import Preset, TaskKind, budget_for
from linarch.evaluation.store import ExperimentStore

stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("x, y", [
    ([0.9, 0.7, 0.8, 0.1, 0.5], [1.0, 0.8, 0.79, 0.53, 0.73]),
    ([0.98, 0.74, 0.52, 0.6, 0.3, 0.2], [1.0, 0.79, 0.89, 0.89, 0.53, 0.7]),  # ties in y
    ([1, 2, 2, 3], [4, 3, 3, 1]),
])
def test_rank_correlations_match_scipy(x, y):
    assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


@pytest.mark.parametrize("task", list(TaskKind))
def test_every_task_has_a_reference_set_a_user_can_run(task):
    """`linarch calibrate --task T` for every task: one baseline, controls with a direction,
    programs that ship with linarch, and a source for every published number."""
    root = Path(__file__).resolve().parent.parent
    refs = REFERENCES[task]
    assert [r.role for r in refs].count("baseline") == 1
    assert {r.role for r in refs} <= {"", "baseline", "better", "worse"}
    assert len({r.label for r in refs}) == len(refs)
    assert sum(r.published is not None for r in refs) >= 4, "too few points to rank"
    for ref in refs:
        assert (root / ref.path).is_file(), ref.path
        assert ref.source.strip(), ref.label
    start, end = markers(task)
    doc = (root / "docs" / "evaluation.md").read_text(encoding="utf-8")
    assert start in doc and end in doc, f"docs/evaluation.md has no {start} block"


def test_calibration_block_is_replaced_in_place(tmp_path):
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
    # what the runs cost when trained, also when a later sitting reads them back from the cache
    again = calibrate(budget_for(TaskKind.MQAR, Preset.TINY), (0, 1),
                      ExperimentStore(tmp_path / "c.sqlite"), references=refs, root=root,
                      aa_repeats=0, workers=1, log=lambda line: None)
    # DeltaNet, Mamba2, linear attention and the A/A's other DeltaNet: 2 seeds at 2 rates each
    assert "the 16 training runs behind it" in table
    assert "the 12 training runs behind it" in table_markdown(again)  # no A/A this time
    assert "(12 of them read back from the run cache" in table_markdown(again)
    # an evaluation's wall time comes only from a repeat trained in the sitting: one read back
    # from the cache took no time, and would make an evaluation look free
    assert "wall (max" in table and "over the 1 repeat(s) trained in this sitting" in table
    read_back = calibrate(budget_for(TaskKind.MQAR, Preset.TINY), (0, 1),
                          ExperimentStore(tmp_path / "c.sqlite"), references=refs, root=root,
                          aa_repeats=1, workers=1, log=lambda line: None)
    cost = table_markdown(read_back).splitlines()[-1]
    assert "wall time not measured in this sitting" in cost and " 0 CPU-s" not in cost


def test_a_mad_calibration_shows_each_task_beside_the_score(tmp_path):
    """MAD's score is the mean of six tasks: the table also gives each task, at the rate each
    mixer kept, so a reader sees which tasks separate the mixers."""
    torch.set_num_threads(1)
    root = Path(__file__).resolve().parent.parent
    refs = (Reference("DeltaNet", "examples/deltanet.lin", 71.8, "s", role="baseline"),
            Reference("GLA", "examples/gla.lin", 60.0, "s"))
    budget = budget_for(TaskKind.MAD, Preset.TINY)
    cal = calibrate(budget, (0, 1), ExperimentStore(tmp_path / "m.sqlite"), references=refs,
                    root=root, aa_repeats=0, workers=1, log=lambda line: None)
    table = table_markdown(cal)
    header = next(line for line in table.splitlines() if line.startswith("| mixer | in-context"))
    assert header.count("|") == 8 and "memorization" in header and "compression" in header
    for row in cal.rows:
        role = Role.BASELINE if row.reference.role == "baseline" else Role.CANDIDATE
        means = row.comparison.problem_means(role)
        assert len(means) == 6 and sum(means.values()) / 6 == pytest.approx(row.mean)
