"""`linarch report RUN`: leaderboard, PNG plots and one self-contained HTML page."""

from __future__ import annotations

import csv
import re

import pytest
from test_search_loop import SEED, config_text

from linarch.search import cli
from linarch.search.loop import Components, SearchLoop
from linarch.search.proposer import Proposal
from linarch.search.records import EvalJob
from linarch.search.report import best_so_far, collect, pareto_front, write_report
from linarch.search.rundir import RunDir
from linarch_testing.search_fakes import (
    InlineExecutor,
    ToyMutationProposer,
    toy_analyze,
    toy_check,
    toy_evaluate,
)

PNG = b"\x89PNG\r\n\x1a\n"


class Mutator(ToyMutationProposer):
    """Toy mutations with a motivation that a careless HTML writer would not escape."""

    def propose(self, request):
        p = super().propose(request)
        return Proposal(p.source, "<script>alert(1)</script> & gate", p.origin)


def evaluate_refusing_values(job: EvalJob):
    if "path value" in job.source:
        raise RuntimeError("no value paths")
    return toy_evaluate(job)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "run"
    run = RunDir.create(path, config_text(max_candidates=12))
    comps = Components(Mutator(seed=11), toy_check, toy_analyze, evaluate_refusing_values)
    SearchLoop(run.config(), run, comps, InlineExecutor(2), seed_programs=[SEED]).run()
    return run


def test_pareto_front_and_best_so_far():
    points = [(1.0, 0.1), (2.0, 0.05), (2.0, 0.3), (4.0, 0.2), (8.0, 0.5), (0.5, -0.1)]
    assert pareto_front(points) == [5, 0, 2, 4]
    assert best_so_far([0.1, -0.2, 0.3, 0.2]) == [0.1, 0.1, 0.3, 0.3]


def test_leaderboard_ranks_by_cascade_then_score(run):
    data = collect(run)
    keys = [(r.stages_passed, r.score) for r in data.rows]
    assert keys == sorted(keys, reverse=True)
    assert [r.rank for r in data.rows] == list(range(1, len(data.rows) + 1))
    scored = [c for c in data.evaluated if c.result is not None]
    assert len(data.rows) == len(scored)
    seed = next(r for r in data.rows if r.id == "s000")
    assert seed.novelty == pytest.approx(1.0) and seed.origin == "seed"
    for r in data.rows:
        assert r.ci_low <= r.score <= r.ci_high and 0.0 <= r.novelty <= 1.0


def test_report_files_are_self_contained(run, tmp_path):
    out = write_report(run, tmp_path / "out")
    for name in ("progress.png", "pareto.png", "lineage.png"):
        assert (out / name).read_bytes().startswith(PNG)
    page = (out / "index.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3
    assert not re.search(r'(src|href)="(https?:|//|[\w./-]+\.(png|css|js))', page)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; gate" in page
    with open(out / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    data = collect(run)
    assert [r["id"] for r in rows] == [r.id for r in data.rows]
    assert float(rows[0]["score"]) == pytest.approx(data.rows[0].score)
    best = data.rows[0]
    assert f"{best.score:+.4f}" in page and best.id in page


def test_report_command(run, capsys):
    assert cli.main(["report", str(run.path)]) == 0
    assert capsys.readouterr().out.strip() == str(run.path / "report" / "index.html")
    assert (run.path / "report" / "index.html").exists()


def test_report_of_a_run_with_failures_only(tmp_path):
    run = RunDir.create(tmp_path / "run", config_text(max_candidates=0))

    def always_fails(job):
        raise RuntimeError("nothing trains")

    comps = Components(Mutator(seed=1), toy_check, toy_analyze, always_fails)
    SearchLoop(run.config(), run, comps, InlineExecutor(1),
               seed_programs=[SEED]).run()
    out = write_report(run)
    assert collect(run).rows == () and (out / "index.html").exists()
    assert SEED.source in (out / "index.html").read_text()


def test_the_report_opens_in_a_real_browser(run, tmp_path):
    """Chromium, headless, loads the page: no console error, no failed load, every plot
    decoded, a non-blank screenshot; failures and free rejections have their tables."""
    from linarch_testing.browser import INSTALL_HINT, find_browser, open_page

    if find_browser() is None:
        pytest.fail(INSTALL_HINT)
    out = write_report(run, tmp_path / "browser")
    page = open_page(out / "index.html")
    assert page.errors == [], page.errors
    assert page.title == "linarch search run"
    assert len(page.images) == 3 and all(i["complete"] and i["width"] > 0 for i in page.images)
    assert page.screenshot.startswith(PNG) and len(page.screenshot) > 20_000
    (tmp_path / "screenshot.png").write_bytes(page.screenshot)
    html = (out / "index.html").read_text()
    assert "<h2>Failed evaluations</h2>" in html and "no value paths" in html
    assert "<h2>Rejected before training</h2>" in html
