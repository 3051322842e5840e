"""`linarch report RUN`: leaderboard, plots and one self-contained HTML page of a run.

Everything is read back from the run's journal (the same replay a resume uses) and its LLM
transcript, so a report can be made while the run is still going, or years later. The
leaderboard ranks as the archive does: by how far a program went in the cascade, then by the
lower bound of its 95% interval on the paired difference to the run's baseline (DeltaNet unless
run.baseline names another), then the mean; it shows the interval, the LLM cost of the
program, and its novelty, structural (1 - WL similarity to
the nearest program seen before it) and behavioural (1 - similarity of its outputs to the
nearest fingerprint). Failed candidates and the proposals rejected before training (free:
they did not count against the budget) get tables of their own. The page is one
self-contained file (plots inlined, no scripts) and is opened in a real headless browser by
the test suite.
"""

from __future__ import annotations

import base64
import csv
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from linarch.search.jsonl import read_jsonl
from linarch.search.racing import Confirmation, Verdict, selection_label
from linarch.search.records import Candidate
from linarch.search.rundir import RunDir
from linarch.search.state import RunState


@dataclass(frozen=True)
class Row:
    rank: int
    id: str
    name: str
    origin: str
    island: int
    generation: int
    parents: str
    stages_passed: int
    score: float
    ci_low: float
    ci_high: float
    verdict: str  # the selection's word: "promising" at most (racing.selection_label)
    flops_per_token: int
    state_bytes: int
    novelty: float
    cost_usd: float
    repairs: int
    behaviour_novelty: float | None = None  # None: not vetted (no fingerprint)
    shape: str = ""  # the hyper-parameters the costs were taken at
    seeds: int = 0  # selection seeds behind the score (racing adds them)
    confirmation: str = ""  # the final stage: "BETTER", "not shown", "failed", "" (not a finalist)
    confirmed_score: float | None = None  # its mean on the fresh seeds


@dataclass(frozen=True)
class ReportData:
    run: RunDir
    state: RunState
    evaluated: tuple[Candidate, ...]  # in evaluation order
    rows: tuple[Row, ...]  # leaderboard, best first
    spent_usd: float
    llm_calls: int


def collect(run: RunDir) -> ReportData:
    config = run.config()
    state = RunState.replay(config, read_jsonl(run.journal))
    evaluated = tuple(state.archive.candidates[c] for c in state.evaluated)
    ranked = sorted(
        (c for c in evaluated if c.result is not None),
        key=lambda c: (tuple(-k for k in c.rank_key), c.id),
    )
    rows = []
    for i, c in enumerate(ranked, start=1):
        rec = state.records[c.id]
        assert c.result is not None
        rows.append(
            Row(
                rank=i, id=c.id, name=c.profile.name, origin=c.origin, island=c.island,
                generation=c.generation, parents=",".join(c.parent_ids),
                stages_passed=c.stages_passed, score=c.score, ci_low=c.result.ci_low,
                ci_high=c.result.ci_high, verdict=selection_label(c.result),
                flops_per_token=c.profile.flops_per_token, state_bytes=c.profile.state_bytes,
                novelty=1.0 - float(rec.get("similarity", 0.0)), cost_usd=c.cost_usd,
                repairs=int(rec.get("repairs", 0)),
                behaviour_novelty=None if rec.get("behaviour_similarity") is None
                else 1.0 - float(rec["behaviour_similarity"]),
                shape=", ".join(f"{k} {v}" for k, v in c.profile.shape),
                seeds=len(c.result.seeds), **_confirmation(rec.get("confirmation")),
            )
        )
    calls = [r for r in read_jsonl(run.transcript) if r.get("event") == "response"]
    spent = sum(float(r.get("cost_usd", 0.0)) for r in calls)
    return ReportData(run, state, evaluated, tuple(rows), spent, len(calls))


def _confirmation(verdict: dict | None) -> dict:
    if verdict is None:
        return {}
    v = Confirmation.from_dict(verdict)
    word = "BETTER" if v.verdict is Verdict.BETTER else v.verdict.value
    return {"confirmation": word,
            "confirmed_score": None if v.result is None else v.result.score}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when minimising x (cost) and maximising y (score)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def best_so_far(scores: Sequence[float]) -> list[float]:
    out, best = [], -math.inf
    for s in scores:
        best = max(best, s)
        out.append(best)
    return out


# ---------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_progress(data: ReportData, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ok = [(i, c) for i, c in enumerate(data.evaluated, start=1) if c.result is not None]
    if ok:
        xs = [i for i, _ in ok]
        ys = [c.score for _, c in ok]
        lows = [c.score - c.result.ci_low for _, c in ok if c.result is not None]
        highs = [c.result.ci_high - c.score for _, c in ok if c.result is not None]
        ax.errorbar(xs, ys, yerr=[lows, highs], fmt="none", ecolor="lightgrey", zorder=1,
                    label="95% interval")
        ax.scatter(xs, ys, s=18, c=[c.stages_passed for _, c in ok], cmap="viridis",
                   zorder=2, label="each program (colour: stages passed)")
        ax.step(xs, best_so_far(ys), where="post", color="crimson", label="best so far")
    failed = [i for i, c in enumerate(data.evaluated, start=1) if c.result is None]
    if failed:
        low = min((c.score for _, c in ok), default=0.0)
        ax.scatter(failed, [low] * len(failed), marker="x", color="grey", label="failed")
    baseline = data.run.baseline_name()
    ax.axhline(0.0, color="black", lw=0.8, ls="--", label=baseline)
    ax.set_xlabel("evaluation")
    ax.set_ylabel(f"score (difference to {baseline})")
    ax.set_title("Best score over the run")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_pareto(data: ReportData, path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    rows = data.rows
    for ax, attr, label in (
        (axes[0], "flops_per_token", "FLOPs per token"),
        (axes[1], "state_bytes", "state bytes"),
    ):
        pts = [(float(getattr(r, attr)), r.score) for r in rows]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=16, color="steelblue")
            front = pareto_front(pts)
            fx = [pts[i][0] for i in front]
            fy = [pts[i][1] for i in front]
            ax.step(fx, fy, where="post", color="crimson", label="Pareto front")
            for i in front:
                ax.annotate(rows[i].id, pts[i], fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
            ax.set_xscale("log")
            ax.legend(fontsize=8)
        ax.axhline(0.0, color="black", lw=0.8, ls="--")
        ax.set_xlabel(label)
        ax.set_ylabel("score")
    fig.suptitle("Score against cost")
    return _save(fig, path)


def plot_lineage(data: ReportData, path: Path) -> Path:
    """Generations left to right; each program under its parent's row; colour = score."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    by_gen: dict[int, list[Candidate]] = {}
    for c in data.evaluated:
        by_gen.setdefault(c.generation, []).append(c)
    pos = {c.id: (gen, row) for gen, cs in by_gen.items() for row, c in enumerate(cs)}
    for c in data.evaluated:
        for parent in c.parent_ids:
            if parent in pos:
                (x0, y0), (x1, y1) = pos[parent], pos[c.id]
                ax.plot([x0, x1], [y0, y1], color="lightgrey", lw=0.8, zorder=1)
    scored = [c for c in data.evaluated if c.result is not None]
    if scored:
        sc = ax.scatter([pos[c.id][0] for c in scored], [pos[c.id][1] for c in scored],
                        c=[c.score for c in scored], cmap="coolwarm", s=40, zorder=2)
        fig.colorbar(sc, ax=ax, label="score")
    failed = [c for c in data.evaluated if c.result is None]
    if failed:
        ax.scatter([pos[c.id][0] for c in failed], [pos[c.id][1] for c in failed],
                   marker="x", color="grey", zorder=2, label="failed")
        ax.legend(fontsize=8)
    best = data.rows[0].id if data.rows else None
    if best is not None:
        ax.annotate(best, pos[best], fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("generation")
    ax.set_yticks([])
    ax.set_title("Lineage")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _confirmed_cell(r: Row) -> str:
    if not r.confirmation:
        return ""
    score = "" if r.confirmed_score is None else f" ({r.confirmed_score:+.4f})"
    return r.confirmation + score


def _confirmation_section(s: RunState, baseline: str) -> str:
    e = html.escape
    if s.confirmations is None:
        return ("<h2>Confirmation</h2><p>Not run (yet): nothing in this run is BETTER than "
                f"{e(baseline)} until its finalists are confirmed on fresh seeds.</p>")
    plan = s.confirm_plan or {}
    lines = "".join(f"<li>{e(Confirmation.from_dict(v).line())}</li>" for v in s.confirmations)
    seeds = ", ".join(map(str, plan.get("seeds", ())))
    return (f"<h2>Confirmation</h2><p>The top {len(s.confirmations)} on fresh seeds "
            f"({e(seeds) or 'none'}), never used for selection; one-sided paired t-tests, "
            f"Holm's correction at alpha {plan.get('alpha', '-')}.</p><ul>{lines}</ul>")


# ---------------------------------------------------------------------------- outputs


def write_csv(data: ReportData, path: Path) -> Path:
    fields = list(Row.__dataclass_fields__)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for row in data.rows:
            writer.writerow([getattr(row, k) for k in fields])
    return path


def render_html(data: ReportData, images: dict[str, Path]) -> str:
    e = html.escape
    s = data.state
    rejected = ", ".join(f"{k}: {v}" for k, v in sorted(s.rejections.items())) or "none"
    outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(s.outcomes.items())) or "none"
    head = [
        f"<h1>linarch search: {e(data.run.name)}</h1>",
        "<p>",
        f"candidates {s.charged} (max {s.config.run.max_candidates}), proposals {s.proposals}; "
        f"evaluated {len(s.evaluated)}; outcomes {e(outcomes)}; rejected before training "
        f"{e(rejected)}; "
        f"LLM {data.llm_calls} calls, ${data.spent_usd:.4f}; "
        f"stopped: {e(s.stopped or 'running')}",
        "</p>",
    ]
    imgs = [
        f'<figure><img alt="{e(name)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{e(name)}</figcaption>'
        "</figure>"
        for name, p in images.items()
    ]
    cols = ("rank", "id", "name", "origin", "stages", "score", "95% interval", "seeds",
            "selection", "confirmed (fresh seeds)",
            "FLOPs/token", "state bytes", "trained at", "novelty (structure)",
            "novelty (behaviour)", "cost $", "repairs", "parents")
    table = ["<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"]
    for r in data.rows:
        behaviour = "-" if r.behaviour_novelty is None else f"{r.behaviour_novelty:.2f}"
        cells = (r.rank, f'<a href="#{e(r.id)}">{e(r.id)}</a>', e(r.name), e(r.origin),
                 r.stages_passed, f"{r.score:+.4f}", f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
                 r.seeds, e(r.verdict), e(_confirmed_cell(r)), f"{r.flops_per_token:,}",
                 f"{r.state_bytes:,}",
                 e(r.shape or "declared defaults"), f"{r.novelty:.2f}", behaviour,
                 f"{r.cost_usd:.4f}", r.repairs, e(r.parents))
        table.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table.append("</table>")
    failed = _table(("id", "name", "failure", "parents"), [
        (f'<a href="#{e(c.id)}">{e(c.id)}</a>', e(c.profile.name), e(c.failure or c.outcome),
         e(",".join(c.parent_ids))) for c in data.evaluated if c.result is None])
    rejected_table = _table(("id", "reason", "nearest", "similarity", "detail"), [
        (e(cid), e(rec["rejection"]["reason"]), e(str(rec["rejection"].get("nearest") or "-")),
         "-" if rec["rejection"].get("similarity") is None
         else f"{float(rec['rejection']['similarity']):.2f}",
         e(_first(str(rec["rejection"].get("detail", "")))))
        for cid, rec in s.records.items() if rec.get("status") == "rejected"])
    bandit = _table(("role", "model", "proposals", "mean reward"), [
        (e(role), e(model), n, f"{mean:.2f}")
        for role, models in s.bandit.summary().items() for model, (n, mean) in models.items()])
    details = []
    for c in data.evaluated:
        rec = s.records[c.id]
        failure = f"<p><b>Failed.</b> {e(c.failure)}</p>" if c.failure else ""
        details.append(
            f'<details id="{e(c.id)}"><summary>{e(c.id)} {e(c.profile.name)} '
            f"({e(c.profile.descriptor.label())})</summary>"
            f"<p><b>Motivation.</b> {e(c.motivation)}</p>{failure}"
            f"<p><b>Analysis.</b> {e(rec.get('analysis', '') or '-')}</p>"
            f"<pre>{e(c.source)}</pre></details>"
        )
    sections = "<h2>Leaderboard</h2><p>Ranked by the furthest cascade stage, then the lower " \
        "bound of the 95% interval on the selection seeds (racing gave the contenders more). " \
        "The selection calls a candidate promising at most; only the confirmation on fresh " \
        "seeds, Holm-corrected, calls one BETTER.</p>" + "".join(table)
    sections += _confirmation_section(s, data.run.baseline_name())
    if failed:
        sections += "<h2>Failed evaluations</h2>" + failed
    if rejected_table:
        sections += ("<h2>Rejected before training</h2><p>Free: these did not count against "
                     "the candidate budget; the proposer was told why.</p>" + rejected_table)
    if bandit:
        sections += "<h2>Models</h2>" + bandit
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        f"<title>linarch search {e(data.run.name)}</title><style>{_CSS}</style></head><body>"
        + "".join(head) + "".join(imgs) + sections
        + "<h2>Programs</h2>" + "".join(details) + "</body></html>"
    )


def _table(cols: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    if not rows:
        return ""
    out = ["<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return "".join(out) + "</table>"


def _first(text: str) -> str:
    from linarch.search.state import first_line

    return first_line(text)[:200]


def write_report(run: RunDir, out: Path | str | None = None) -> Path:
    """Write leaderboard.csv, three PNG plots and index.html into `out` (default RUN/report)."""
    data = collect(run)
    folder = Path(out) if out is not None else run.report
    folder.mkdir(parents=True, exist_ok=True)
    images = {
        "best score over the run": plot_progress(data, folder / "progress.png"),
        "Pareto front": plot_pareto(data, folder / "pareto.png"),
        "lineage": plot_lineage(data, folder / "lineage.png"),
    }
    write_csv(data, folder / "leaderboard.csv")
    (folder / "index.html").write_text(render_html(data, images), encoding="utf-8")
    return folder


_CSS = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
    "th{background:#f3f3f3}img{max-width:100%}pre{background:#f7f7f7;padding:8px;"
    "overflow-x:auto}figure{margin:1em 0}"
)
