"""Racing and the final confirmation (search/racing.py, the loop's last stage):

- more seeds go only to the candidates whose interval still reaches the leader's lower bound,
  in one pool order, up to racing.max_seeds;
- the confirmation trains the finalists on seeds that no selection ever used, and Holm's
  correction over the finalists decides; only it says BETTER;
- a run killed in the middle of racing resumes the race where it was and ends as the
  uninterrupted run ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import scipy.stats
from test_search_loop import check_journal, config_text, make_loop

from linarch.search.config import ConfigError, loads_config
from linarch.search.jsonl import read_jsonl
from linarch.search.racing import (
    Confirmation,
    Verdict,
    bounds,
    confirm,
    contenders,
    holm,
    leader,
    next_seeds,
    one_sided_p,
)
from linarch.search.records import Candidate, EvalResult, Profile
from linarch.search.rundir import RunDir
from linarch.search.state import RunState
from linarch_testing import search_fakes as fakes
from linarch_testing.search_fakes import InlineExecutor, ToyMutationProposer, toy_source

TESTS = str(Path(__file__).resolve().parent)
RACING = """
[racing]
seeds = [3, 4, 5]
step = 2
max_seeds = 6
[confirm]
top = 2
seeds = [100, 101, 102, 103]
"""


def racing_config(max_candidates=8, extra=RACING):
    return config_text(max_candidates=max_candidates, extra=extra).replace(
        "seeds = [0, 1]", "seeds = [0, 1, 2]")


def result(scores, seeds=None):
    """A paired result from per-seed differences, with the t interval compare reports."""
    import statistics

    from linarch.evaluation.stats import t_quantile

    mean = statistics.fmean(scores)
    half = t_quantile(0.975, len(scores) - 1) * statistics.stdev(scores) / len(scores) ** 0.5
    return EvalResult(mean, mean - half, mean + half, "sim",
                      seeds=tuple(seeds or range(len(scores))))


def candidate(cid, scores, seeds=None, stages=1):
    profile = Profile(cid, cid, 1, 1, ("delta",), 1)
    return Candidate(cid, "", "", (), 0, 1, "test", profile, result(scores, seeds), stages)


# ------------------------------------------------------------------------ the rules


def test_only_intervals_that_reach_the_leaders_lower_bound_race():
    lead = candidate("lead", [0.30, 0.32, 0.31])  # lower bound about 0.285
    close = candidate("close", [0.25, 0.35, 0.30])  # upper bound reaches it
    behind = candidate("behind", [0.00, 0.02, 0.01])  # upper bound about 0.035: out
    earlier_stage = candidate("gate", [0.9, 1.0, 1.1], stages=0)
    raced = contenders([lead, close, behind, earlier_stage], (0, 1, 2, 3, 4, 5), step=2,
                       max_seeds=5)
    assert [(c.id, seeds) for c, seeds in raced] == [("lead", (0, 1, 2, 3, 4)),
                                                     ("close", (0, 1, 2, 3, 4))]
    assert leader([lead, close, behind]).id == "lead"


def test_more_seeds_come_from_one_pool_in_order_up_to_the_cap():
    pool = (0, 1, 2, 3, 4, 5, 6, 7)
    assert next_seeds((0, 1, 2), pool, 2, 8) == (0, 1, 2, 3, 4)
    assert next_seeds((0, 1, 2, 3, 4), pool, 2, 6) == (0, 1, 2, 3, 4, 5)
    assert next_seeds((0, 1, 2, 5), pool, 2, 8) == (0, 1, 2, 5, 3, 4)  # seeds it lacks
    assert next_seeds(pool, pool, 2, 10) is None and next_seeds((0, 1), pool, 2, 2) is None


def test_racing_intervals_are_z_standard_errors_or_the_t_interval():
    close = candidate("close", [0.25, 0.35, 0.30])  # mean 0.30, SE 0.0289
    assert bounds(close.result, 1.0) == (pytest.approx(0.30 - 0.0288675), pytest.approx(
        0.30 + 0.0288675))
    assert bounds(close.result, None) == (close.result.ci_low, close.result.ci_high)
    lead = candidate("lead", [0.36, 0.38, 0.37])  # lower bounds: 0.364 (1 SE), 0.345 (t)
    both = [lead, close]
    assert [c.id for c, _ in contenders(both, range(6), step=2, max_seeds=5)] == \
        ["lead", "close"]  # 95% t: close's upper bound 0.424 reaches 0.345
    assert [c.id for c, _ in contenders(both, range(6), step=2, max_seeds=5, z=1.0)] == \
        ["lead"]  # 1 SE: close reaches 0.329 < 0.364


def test_a_result_without_seeds_or_at_the_cap_is_not_raced():
    lead = candidate("lead", [0.3, 0.31, 0.32])
    full = candidate("full", [0.3, 0.31, 0.32, 0.29], seeds=(0, 1, 2, 3))
    seedless = Candidate("cost", "", "", (), 0, 1, "test", Profile("x", "x", 1, 1, (), 1),
                         EvalResult(0.1, 0.0, 0.2, "tie"), 1)
    raced = contenders([lead, full, seedless], (0, 1, 2, 3), step=2, max_seeds=4)
    assert [c.id for c, _ in raced] == ["lead"]


@pytest.mark.parametrize("diffs", [[0.05, 0.02, 0.04, 0.03], [0.1, -0.02, 0.03],
                                   [-0.05, 0.01, -0.02, 0.0, -0.01]])
def test_the_one_sided_p_value_is_scipys_paired_t_test(diffs):
    expected = scipy.stats.ttest_1samp(diffs, 0.0, alternative="greater").pvalue
    assert one_sided_p(result(diffs)) == pytest.approx(expected, rel=1e-6)


def test_holms_thresholds_step_down_and_stop_at_the_first_failure():
    levels = holm({"a": 0.010, "b": 0.040, "c": 0.020}, 0.05)
    assert levels["a"] == (pytest.approx(0.05 / 3), True)  # smallest p: alpha / 3
    assert levels["c"] == (pytest.approx(0.05 / 2), True)  # next: alpha / 2
    assert levels["b"] == (pytest.approx(0.05 / 1), True)  # last: alpha
    stops = holm({"a": 0.030, "b": 0.001, "c": 0.040}, 0.05)
    assert stops["b"] == (pytest.approx(0.05 / 3), True)
    assert stops["a"] == (pytest.approx(0.05 / 2), False)  # 0.03 > 0.025: the first failure
    assert stops["c"] == (pytest.approx(0.05), False)  # 0.04 <= 0.05, but Holm has stopped


def test_holm_rejects_exactly_where_the_adjusted_p_values_do():
    """Against the textbook adjusted p-values: p~_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))."""
    import random

    rng = random.Random(7)
    for _ in range(200):
        ps = {f"c{i}": rng.random() ** 3 for i in range(rng.randint(1, 6))}
        order = sorted(ps, key=lambda k: (ps[k], k))
        m, running, adjusted = len(ps), 0.0, {}
        for j, k in enumerate(order):
            running = max(running, min(1.0, (m - j) * ps[k]))
            adjusted[k] = running
        levels = holm(ps, 0.05)
        assert {k: levels[k][1] for k in ps} == {k: adjusted[k] <= 0.05 for k in ps}


def test_a_failed_confirmation_still_counts_in_the_family():
    finals = [candidate("a", [0.2, 0.21, 0.19]), candidate("b", [0.1, 0.12, 0.11])]
    strong = result([0.20, 0.21, 0.19, 0.22], seeds=(100, 101, 102, 103))
    verdicts = {v.id: v for v in confirm(finals, {"a": strong, "b": None}, alpha=0.05)}
    assert verdicts["b"].verdict is Verdict.FAILED and verdicts["a"].tests == 2
    assert verdicts["a"].threshold == pytest.approx(0.025)
    assert verdicts["a"].verdict is Verdict.BETTER


def test_the_verdict_names_the_runs_baseline_and_old_journals_read_as_deltanet():
    finals = [candidate("a", [0.2, 0.21, 0.19])]
    strong = result([0.20, 0.21, 0.19, 0.22], seeds=(100, 101, 102, 103))
    (verdict,) = confirm(finals, {"a": strong}, alpha=0.05, baseline="LinearAttention")
    assert verdict.line().startswith("a: BETTER than LinearAttention on 4 fresh seeds")
    assert Confirmation.from_dict(verdict.to_dict()) == verdict
    old = {k: v for k, v in verdict.to_dict().items() if k != "baseline"}
    assert "BETTER than DeltaNet" in Confirmation.from_dict(old).line()


def test_the_confirmed_mean_must_reach_the_minimum_effect():
    finals = [candidate("a", [0.2, 0.21, 0.19])]
    small = result([0.010, 0.011, 0.012, 0.010], seeds=(100, 101, 102, 103))
    assert confirm(finals, {"a": small}, alpha=0.05)[0].verdict is Verdict.BETTER
    assert confirm(finals, {"a": small}, alpha=0.05, min_effect=0.02)[0].verdict \
        is Verdict.NOT_SHOWN


def test_the_proposer_never_reads_better_before_the_confirmation():
    """A BETTER on the selection seeds reaches the researcher and the analyst as "promising":
    those seeds chose the candidate, so only the confirmation on fresh seeds may say BETTER."""
    import dataclasses

    c = candidate("c1", [0.2, 0.25, 0.3])
    better = dataclasses.replace(c, result=dataclasses.replace(c.result, verdict="better"))
    assert better.brief()["verdict"].startswith("promising")
    assert "better" not in better.brief()["verdict"].replace("better on the selection", "")
    worse = dataclasses.replace(c, result=dataclasses.replace(c.result, verdict="worse"))
    assert worse.brief()["verdict"] == "worse"


def test_confirmation_seeds_that_selection_uses_are_refused_at_config_load():
    with pytest.raises(ConfigError, match=r"confirm.seeds \[4\] are also selection seeds"):
        loads_config(racing_config(extra=RACING.replace("[100, 101, 102, 103]", "[4, 100]")))
    with pytest.raises(ConfigError, match="repeat a seed"):
        loads_config(racing_config(extra=RACING.replace("[3, 4, 5]", "[3, 2]")))


def test_racing_and_confirmation_jobs_train_exactly_their_seeds():
    """The evaluation's sequential schedule (which may extend a close first look to 5 or 8
    seeds) is not used for a job that fixes its seeds: racing and the confirmation."""
    from linarch.evaluation.presets import Preset, TaskKind, budget_for
    from linarch.search.evaluate import _schedule
    from linarch.search.records import EvalJob

    budget = budget_for(TaskKind.MQAR, Preset.PROXY)
    fixed = _schedule(EvalJob("k", "c", "", "mqar", "proxy", (0, 1, 2, 3, 4), fixed_seeds=True),
                      budget)
    assert fixed.seeds == (0, 1, 2, 3, 4) and fixed.looks == (5,)
    fresh = _schedule(EvalJob("k", "c", "", "mqar", "proxy", (1000, 1001), fixed_seeds=True),
                      budget)
    assert fresh.seeds == (1000, 1001) and fresh.looks == (2,)


# ------------------------------------------------------------------------ the loop


def run_racing(tmp_path, name="run", max_candidates=8, noise="0.02"):
    os.environ["LINARCH_TOY_NOISE"] = noise
    try:
        loop = make_loop(tmp_path, racing_config(max_candidates), ToyMutationProposer(seed=5),
                         InlineExecutor(2), evaluate=fakes.noisy_evaluate, name=name)
        summary = loop.run()
    finally:
        del os.environ["LINARCH_TOY_NOISE"]
    return loop, summary, read_jsonl(loop.run_dir.journal)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return run_racing(tmp_path_factory.mktemp("racing"))


def test_racing_adds_seeds_only_to_candidates_whose_interval_reaches_the_leader(finished):
    loop, _, events = finished
    check_journal(events)
    state = RunState(loop.config)
    pool = (0, 1, 2, 3, 4, 5)
    z = loop.config.racing.z  # the racing intervals: mean -+ z standard errors
    raced = set()
    for ev in events:
        if ev["event"] == "race_submitted":
            c = state.archive.candidates[ev["id"]]
            top = leader(state.archive.candidates.values())
            reach, bar = bounds(c.result, z)[1], bounds(top.result, z)[0]
            assert reach >= bar, (c.id, c.result, top.id)
            seeds = tuple(ev["seeds"])
            assert seeds[: len(c.result.seeds)] == c.result.seeds  # earlier seeds kept
            assert seeds == next_seeds(c.result.seeds, pool, 2, 6)  # the pool's next ones
            raced.add(c.id)
        state.apply(ev)
    archive = state.archive
    never = [c for c in archive.candidates.values()
             if c.result is not None and c.id not in raced and c.id != archive.seeds[0]]
    assert raced and never, "the run must race some candidates and not others"
    bar = bounds(leader(archive.candidates.values()).result, z)[0]
    for c in never:  # kept its first look because it was out of the race
        assert len(c.result.seeds) == 3 and bounds(c.result, z)[1] < bar
    for cid in raced:
        assert len(archive.candidates[cid].result.seeds) > 3


def test_the_archive_ranks_a_raced_candidate_by_its_new_interval(finished):
    loop, _, events = finished
    done = [e for e in events if e["event"] == "race_done" and e["outcome"] == "ok"]
    last = {e["id"]: e["result"] for e in done}
    for cid, res in last.items():
        c = loop.state.archive.candidates[cid]
        assert list(c.result.seeds) == res["seeds"] and c.lcb == res["ci_low"]


def test_the_confirmation_never_reuses_a_selection_seed(finished):
    loop, summary, events = finished
    selection = {s for e in events if e["event"] in ("stage_done", "race_done")
                 and e.get("result") for s in e["result"]["seeds"]}
    started = [e for e in events if e["event"] == "confirm_started"]
    assert len(started) == 1 and started[0]["seeds"] == [100, 101, 102, 103]
    confirmed = [e for e in events if e["event"] == "confirm_done"]
    assert {e["id"] for e in confirmed} == set(started[0]["ids"]) and len(confirmed) == 2
    for e in confirmed:
        assert set(e["result"]["seeds"]) == {100, 101, 102, 103}
        assert not set(e["result"]["seeds"]) & selection
    # the finalists are the archive's top two by its ranking, seed programs excluded
    ranked = sorted((c for c in loop.state.archive.candidates.values()
                     if c.result is not None and c.origin != "seed"),
                    key=lambda c: c.rank_key, reverse=True)
    assert started[0]["ids"] == [c.id for c in ranked[:2]]
    # nothing was evaluated after the verdicts, and the verdicts are Holm's over two tests
    assert events[-2]["event"] == "confirmed" and events[-1]["event"] == "stopped"
    assert {v.tests for v in summary.confirmations} == {2}
    assert [v.id for v in summary.confirmations] == started[0]["ids"]


def test_racing_and_confirmation_jobs_get_time_for_their_runs(finished):
    """executor.time_limit_s is sized for a first look (3 run seeds): a racing job on n seeds
    gets n / 3 of it, a confirmation on 4 fresh seeds, which trains the baseline's too, 8 / 3."""
    loop, _, events = finished
    given = loop.executor.limits_of
    last_race = {e["id"]: e["seeds"] for e in events if e["event"] == "race_submitted"}
    assert last_race
    for cid, seeds in last_race.items():
        assert given[f"{cid}|race"].time_s == pytest.approx(100.0 * len(seeds) / 3)
    for e in (e for e in events if e["event"] == "confirm_submitted"):
        assert given[f"{e['id']}|confirm"].time_s == pytest.approx(100.0 * 8 / 3)
    # a stage's first look keeps the executor's own limits
    assert all(j.endswith(("|race", "|confirm")) for j in given)


def test_only_the_confirmation_says_better(tmp_path):
    """The command line: the best of the selection is at most "promising"; BETTER appears
    only in the confirmation's lines, each with its fresh seeds and Holm's level."""
    (tmp_path / "seed.lin").write_text(toy_source("Base"))
    cfg = tmp_path / "search.toml"
    cfg.write_text(racing_config(6).replace("seed_programs = []", 'seed_programs = ["seed.lin"]')
                   .replace("toy_evaluate", "noisy_evaluate"))
    env = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "LINARCH_TOY_NOISE": "0.01"}
    out = subprocess.run([sys.executable, "-m", "linarch.search", "run", "--progress", "none",
                          str(cfg), "--run-dir", str(tmp_path / "run")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    head = lines.index("confirmation on fresh seeds (Holm-corrected; only this may say BETTER):")
    assert "BETTER" not in "\n".join(lines[:head]).replace("may say BETTER", "")
    assert "better" not in lines[head - 1].split("best in selection")[1]
    verdicts = lines[head + 1:]
    assert len(verdicts) == 2 and all("fresh seeds" in v and "Holm" in v for v in verdicts)
    assert any("BETTER than DeltaNet" in v for v in verdicts)  # toy gates help by 0.04-0.05


def test_a_run_killed_in_the_middle_of_racing_resumes_the_race(tmp_path):
    _, whole, events = run_racing(tmp_path, "whole")
    cut = next(i for i, e in enumerate(events) if e["event"] == "race_submitted"
               and any(f["event"] == "stage_done" for f in events[i + 1:]))
    interrupted = events[: cut + 1]  # kill -9 right after the race job was journaled
    racing = interrupted[-1]
    run = RunDir.create(tmp_path / "cut", racing_config())
    run.journal.write_text("".join(__import__("json").dumps(e) + "\n" for e in interrupted))
    resumed_loop, resumed, after = run_racing(tmp_path, "cut")
    check_journal(after)
    new = after[len(interrupted):]
    first_race = next(e for e in new if e["event"] == "race_done")
    assert first_race["id"] == racing["id"] and first_race["result"]["seeds"] == racing["seeds"]
    assert not [e for e in new if e["event"] == "race_submitted" and e["id"] == racing["id"]
                and e["seeds"] == racing["seeds"]], "the race was journaled twice"
    assert [v.to_dict() for v in resumed.confirmations] == \
        [v.to_dict() for v in whole.confirmations]
    assert resumed.race_jobs == whole.race_jobs


def test_the_report_says_promising_in_selection_and_better_only_when_confirmed(finished):
    from linarch.search.report import collect, write_report

    loop, summary, _ = finished
    data = collect(loop.run_dir)
    assert {r.verdict for r in data.rows} <= {"promising", ""}
    finals = {v.id: v for v in summary.confirmations}
    for r in data.rows:
        if r.id in finals:
            expected = "BETTER" if finals[r.id].verdict is Verdict.BETTER else "not shown"
            assert r.confirmation == expected
            assert r.confirmed_score == finals[r.id].result.score
        else:
            assert r.confirmation == "" and r.confirmed_score is None
        assert r.seeds == len(loop.state.archive.candidates[r.id].result.seeds)
    page = (write_report(loop.run_dir) / "index.html").read_text()
    assert "<h2>Confirmation</h2>" in page
    for v in summary.confirmations:
        assert v.line().split(":")[0] in page and f"Holm {v.threshold:.4f}" in page


def test_every_trained_job_of_a_racing_run_fixes_its_seeds(tmp_path):
    """The first look is exactly run.seeds; racing and the confirmation name theirs."""
    jobs = []

    def recording(job):
        jobs.append(job)
        return fakes.noisy_evaluate(job)

    loop = make_loop(tmp_path, racing_config(3), ToyMutationProposer(seed=5), InlineExecutor(2),
                     evaluate=recording)
    loop.run()
    assert jobs and all(j.fixed_seeds for j in jobs)
    first = [j for j in jobs if j.key.count("/") == 2]  # run/candidate/stage: the cascade
    assert {j.seeds for j in first} == {(0, 1, 2)}
    assert {j.seeds for j in jobs if "/confirm-" in j.key} == {(100, 101, 102, 103)}
