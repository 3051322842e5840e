"""Calibration: run the reference mixers on a budget and check the score against the literature.

    linarch calibrate [--preset proxy] [--seeds 6] [--aa 10] [--store runs/calib.sqlite]
                      [--write docs/evaluation.md]

Every reference mixer is compared with DeltaNet through `compare` (the one evaluation path), on
fixed seeds so that every mixer has the same ones. From the comparisons:

- the table: each mixer's accuracy (mean and interval over seeds), its paired difference to
  DeltaNet with interval and verdict, its parameters and state, the learning rate it kept;
- Kendall's tau-b between the measured means and the published values (`Reference.published`,
  with where each number comes from), over the mixers that have one;
- split-half stability: the mixers ranked on the even seeds and on the odd seeds, Spearman's
  rho (and Kendall's tau) between the two rankings;
- controls, through the budget's own sequential schedule (what a user gets): attention against
  DeltaNet must be BETTER, linear attention WORSE;
- an A/A test: DeltaNet against DeltaNet with another initialisation (`init_salt`), repeated;
  the share of BETTER verdicts is the false-BETTER rate; each repeat is a candidate's full
  evaluation with the baseline cached, so its wall time is that target's measurement.

Runs go through the store's run cache, so an interrupted calibration resumes where it stopped.
`--write` replaces the block between the task's calibration markers of the given markdown file
(`<!-- calibration:start -->` for MQAR, `<!-- calibration-lm:start -->` for LM).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import fmean, median, stdev

from .compare import Comparison, Role, compare
from .mixers import load_mixer
from .param_match import MatchError, MatchTarget
from .presets import Budget, Preset, TaskKind, budget_for
from .report import kept_hypers
from .run_cache import RunCache, RunKey
from .seeds import SeedSchedule
from .stats import Verdict, level, t_quantile
from .store import ExperimentStore

MATCHING = {MatchTarget.PARAMS: "each mixer's own width matched to DeltaNet's parameters",
            MatchTarget.STATE: "each mixer's own width matched to DeltaNet's state",
            MatchTarget.NONE: ("each mixer at the configuration of its published number "
                               "(declared widths, Mamba2's d_state as named: Zoology's protocol)")}


def markers(task: TaskKind, block: str | None = None) -> tuple[str, str]:
    """The markdown markers around a calibration block: MQAR's is the plain one, LM's
    `calibration-lm`, or any named `block`."""
    name = block or ("calibration" if task is TaskKind.MQAR else f"calibration-{task.value}")
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


@dataclass(frozen=True)
class Reference:
    """A reference mixer, and the published number it should be ranked by (or None).

    `widths` are the mixer's own keywords of the configuration the published number was
    measured at (used when nothing is matched, Zoology's protocol); empty: its declared ones.
    """

    label: str
    path: str  # relative to the repository root (the examples ship with linarch)
    published: float | None
    source: str
    role: str = ""  # "baseline", "better" (control: must be BETTER), "worse" (must be WORSE)
    tolerance: float | None = None  # a wider parameter match, where the layer cannot get closer
    widths: tuple[tuple[str, object], ...] = ()


ZOOLOGY = ("Zoology README figure (HazyResearch/zoology, zoology/analysis/paper/zoology_paper/"
           "zoology_results.png), MQAR, d_model 64, read off the plot")

# Zoology's configurations (zoology/experiments/models_repo.py): DeltaNet and Gated DeltaNet
# with 2 heads and use_gate=False, GLA with 2 heads, Mamba2 at d_state 8 / 16 / 24, RWKV-7 at
# head_dim 64; every mixer otherwise at its declared width, as here.
MQAR_REFERENCES: tuple[Reference, ...] = (
    Reference("softmax attention", "examples/reference/softmax_attention.lin", 1.00,
              f"{ZOOLOGY}: attention ~1.0", role="better"),
    Reference("DeltaNet", "examples/deltanet.lin", 0.79, f"{ZOOLOGY}: 0.79 at 9e3 state bytes",
              role="baseline"),
    Reference("Gated DeltaNet, no output gate", "benchmarks/sanity/gdn_nogate.lin", 0.89,
              f"{ZOOLOGY}: 0.89 at 1.7e4 bytes; Zoology's Gated DeltaNet, whose output gate is "
              "off (use_gate=False)"),
    Reference("Gated DeltaNet", "examples/gated_deltanet.lin", None,
              "no published MQAR point with the output gate: Zoology measures Gated DeltaNet "
              "without it (the row above), the Gated DeltaNet paper (arXiv 2412.06464) "
              "reports retrieval at 1.3B parameters, not MQAR"),
    Reference("RWKV-7", "examples/rwkv7.lin", 0.815,
              f"{ZOOLOGY}: 0.815 at 1.7e4 bytes (one head of 64; here the backbone's two "
              "heads of 32, half the state)", tolerance=0.2),
    Reference("Mamba2, d_state 16", "examples/mamba2.lin", 0.69,
              f"{ZOOLOGY}: 0.69 at d_state 16", widths=(("state_size", 16),)),
    Reference("Mamba2, d_state 8", "examples/mamba2.lin", 0.52,
              f"{ZOOLOGY}: 0.52 at d_state 8", widths=(("state_size", 8),)),
    Reference("GLA", "examples/gla.lin", 0.53, f"{ZOOLOGY}: 0.53 at 4.7e3 bytes"),
    Reference("linear attention", "examples/linear_attention.lin", 0.70,
              f"{ZOOLOGY}: Based (linear attention, Taylor feature map) 0.67-0.72; plain "
              "linear attention is not in the figure, so this is the nearest published point",
              role="worse"),
    Reference("RetNet", "examples/retnet.lin", None, "no published MQAR point in these sources"),
    Reference("HGRN2", "examples/hgrn2.lin", None, "no published MQAR point in these sources"),
)

GDN_TABLE3 = ("Yang, Kautz, Hatamizadeh 2024, Gated Delta Networks (arXiv 2412.06464), Table 3: "
              "WikiText perplexity, 1.3B parameters, 100B FineWeb-Edu tokens")

# The LM axis: published perplexities (lower is better, like the validation loss measured here).
LM_REFERENCES: tuple[Reference, ...] = (
    Reference("Gated DeltaNet", "examples/gated_deltanet.lin", 16.42, GDN_TABLE3, role="better"),
    Reference("DeltaNet", "examples/deltanet.lin", 17.71, GDN_TABLE3, role="baseline"),
    Reference("Mamba2", "examples/mamba2.lin", 18.25, GDN_TABLE3),
    Reference("softmax attention", "examples/reference/softmax_attention.lin", 18.53,
              f"{GDN_TABLE3} (Transformer++)"),
    Reference("RetNet", "examples/retnet.lin", 19.08, GDN_TABLE3),
    Reference("HGRN2", "examples/hgrn2.lin", 19.10, GDN_TABLE3),
)

DELTANET_MAD = ("Yang, Wang, Zhang, Shen, Kim 2024, Parallelizing Linear Transformers with the "
                "Delta Rule over Sequence Length (arXiv 2406.06484), MAD table: mean accuracy "
                "over the six MAD tasks, in percent")
RWKV7_MAD = ("Peng et al. 2025, RWKV-7 \"Goose\" with Expressive Dynamic State Evolution "
             "(arXiv 2503.14456), MAD table (its other rows are the DeltaNet paper's)")

# The MAD axis: the published MAD scores (higher is better, like the MAD score measured here).
# One consistent table: the DeltaNet paper's, which the RWKV-7 paper copies and extends.
MAD_REFERENCES: tuple[Reference, ...] = (
    Reference("RWKV-7", "examples/rwkv7.lin", 79.3, RWKV7_MAD, role="better", tolerance=0.2),
    Reference("softmax attention", "examples/reference/softmax_attention.lin", 74.5,
              f"{DELTANET_MAD} (Transformer)"),
    Reference("DeltaNet", "examples/deltanet.lin", 71.8, DELTANET_MAD, role="baseline"),
    Reference("Mamba2, d_state 16", "examples/mamba2.lin", 69.3,
              f"{DELTANET_MAD}: Mamba (Mamba-1, whose default d_state is 16); Mamba2 has no "
              "published MAD score", widths=(("state_size", 16),)),
    Reference("GLA", "examples/gla.lin", 60.0, DELTANET_MAD, role="worse"),
)

REFERENCES = {TaskKind.MQAR: MQAR_REFERENCES, TaskKind.LM: LM_REFERENCES,
              TaskKind.MAD: MAD_REFERENCES}


@dataclass(frozen=True)
class Row:
    reference: Reference
    comparison: Comparison
    values: tuple[float, ...]  # the mixer's accuracy per seed

    @property
    def mean(self) -> float:
        return fmean(self.values)

    def half_width(self, confidence: float = 0.95) -> float:
        n = len(self.values)
        if n < 2:
            return math.inf
        return t_quantile(0.5 + confidence / 2, n - 1) * stdev(self.values) / math.sqrt(n)


@dataclass(frozen=True)
class Calibration:
    budget: Budget
    seeds: tuple[int, ...]
    rows: tuple[Row, ...]
    controls: tuple[tuple[Reference, Comparison], ...]
    aa: tuple[Comparison, ...]
    wall_s: float
    cpu_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    workers: int = 1
    match: MatchTarget = MatchTarget.PARAMS

    def tau(self) -> tuple[float, int]:
        """Kendall's tau-b, measured means against published values, and how many mixers."""
        pairs = [(r.mean, r.reference.published) for r in self.rows
                 if r.reference.published is not None]
        return kendall_tau_b([a for a, _ in pairs], [b for _, b in pairs]), len(pairs)

    def split_half(self) -> tuple[float, float]:
        """(Spearman's rho, Kendall's tau-b) between rankings on even and on odd seeds."""
        even = [fmean(r.values[0::2]) for r in self.rows]
        odd = [fmean(r.values[1::2]) for r in self.rows]
        return spearman_rho(even, odd), kendall_tau_b(even, odd)

    def false_better_rate(self) -> float:
        return sum(c.verdict is Verdict.BETTER for c in self.aa) / max(1, len(self.aa))


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either ranking are accounted for, as in scipy)."""
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else math.nan


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of the ranks (average ranks for ties)."""
    rx, ry = _ranks(x), _ranks(y)
    mx, my = fmean(rx), fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var else math.nan


def _load() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan, math.nan, math.nan)


def calibrate(budget: Budget, seeds: Sequence[int], store: ExperimentStore, *,
              references: Sequence[Reference] = MQAR_REFERENCES, root: Path = Path("."),
              aa_repeats: int = 10, workers: int = 2, match: MatchTarget = MatchTarget.NONE,
              log: Callable[[str], None] = print) -> Calibration:
    """Run the reference set, the controls and the A/A test (see the module docstring)."""
    started, cpu0 = time.perf_counter(), _children_cpu()
    load_before = _load()
    cache = RunCache(store)
    specs = {r.label: load_mixer(root / r.path) for r in references}
    base = next(r for r in references if r.role == "baseline")
    baseline = specs[base.label]
    fixed = SeedSchedule.fixed(seeds)
    rows = []
    for ref in references:
        log(f"calibrate: {ref.label}")
        b = budget if ref.tolerance is None else replace(budget, tolerance=ref.tolerance)
        try:
            c = compare(specs[ref.label], baseline, b, fixed, store, cache, workers=workers,
                        match=match, log=log, widths=_widths(ref, match))
        except MatchError as exc:  # reported, and the calibration goes on
            log(f"calibrate: {ref.label} left out: {exc}")
            continue
        role = Role.BASELINE if ref is base else Role.CANDIDATE
        rows.append(Row(ref, c, tuple(c.score(role, s).value for s in c.seeds)))
    controls = []
    for ref in references:
        if ref.role in ("better", "worse"):
            log(f"control: {ref.label} against {base.label}, sequential seeds")
            b = budget if ref.tolerance is None else replace(budget, tolerance=ref.tolerance)
            controls.append((ref, compare(specs[ref.label], baseline, b, None, store, cache,
                                          workers=workers, match=match, log=log,
                                          widths=_widths(ref, match))))
    aa = []
    for repeat in range(1, aa_repeats + 1):
        log(f"A/A repeat {repeat}: {base.label} (another initialisation) against {base.label}")
        aa.append(compare(replace(baseline, init_salt=repeat), baseline, budget, None, store,
                          cache, workers=workers, match=match, log=log))
    return Calibration(budget, tuple(seeds), tuple(rows), tuple(controls), tuple(aa),
                       time.perf_counter() - started, _children_cpu() - cpu0, load_before,
                       _load(), workers, match)


def _widths(ref: Reference, match: MatchTarget) -> dict[str, object]:
    """A reference's published configuration, where nothing is matched (else matching sets
    the width)."""
    return dict(ref.widths) if match is MatchTarget.NONE else {}


def _children_cpu() -> float:
    """CPU seconds of this process and every finished child (the worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def table_markdown(cal: Calibration) -> str:
    """The calibration as a markdown block (what --write puts in docs/evaluation.md)."""
    b = cal.budget
    tau, n_tau = cal.tau()
    rho, tau_half = cal.split_half()
    metric = b.metric.name
    lines = [
        f"Calibration of the `{b.preset.value}` {b.task.value.upper()} budget (budget key "
        f"`{b.key}`), {MATCHING[cal.match]}, "
        f"{len(cal.seeds)} seeds ({', '.join(map(str, cal.seeds))}); `linarch calibrate` on "
        f"{time.strftime('%Y-%m-%d')}: {cal.wall_s / 60:.0f} min wall, {cal.cpu_s / 60:.0f} "
        f"CPU-min, load average {cal.load_before[0]:.1f} before and {cal.load_after[0]:.1f} "
        f"after; {_runs_behind(cal)}.",
        "",
        f"| mixer | {metric} (95% CI) | vs DeltaNet ({level(b.rule.confidence)} CI) | verdict "
        "| params | state bytes "
        "| lr | published | source |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sign = -1.0 if b.metric.higher_is_better else 1.0
    for row in sorted(cal.rows, key=lambda r: sign * r.mean):
        c, ref = row.comparison, row.reference
        m = next(iter(c.matches.values()))
        is_base = ref.role == "baseline"
        arm = m.baseline if is_base else m.candidate
        s = c.stats
        diff = "-" if is_base else f"{s.mean_difference:+.3f} [{s.ci_low:+.3f}, {s.ci_high:+.3f}]"
        verdict = "-" if is_base else s.verdict.value
        role = Role.BASELINE if is_base else Role.CANDIDATE
        lr = kept_hypers(c, role).replace("lr ", "")
        published = "-" if ref.published is None else f"{ref.published:g}"
        lines.append(
            f"| {ref.label} | {row.mean:.3f} [{row.mean - row.half_width():.3f}, "
            f"{row.mean + row.half_width():.3f}] | {diff} | {verdict} | "
            f"{arm.params.non_embedding:,} | {arm.state_bytes:,} | {lr} | "
            f"{published} | {ref.source} |")
    if len(b.problems) > 1:
        lines += ["", *_problem_table(cal)]
    aa_better = sum(c.verdict is Verdict.BETTER for c in cal.aa)
    aa_worse = sum(c.verdict is Verdict.WORSE for c in cal.aa)
    capped = [c for c in cal.aa if c.stats is not None]
    half = [c.stats.half_width for c in capped if c.stats.pairs == b.schedule.cap]
    lines += [
        "",
        f"- Kendall's tau-b against the published values: **{tau:.2f}** over {n_tau} mixers.",
        f"- Split-half stability (rankings on even against odd seeds): Spearman's rho "
        f"**{rho:.2f}**, Kendall's tau-b {tau_half:.2f}.",
    ]
    for ref, c in cal.controls:
        s = c.stats
        want = Verdict.BETTER if ref.role == "better" else Verdict.WORSE
        lines.append(f"- Control, {ref.label} against DeltaNet (sequential seeds): "
                     f"{s.mean_difference:+.3f} [{s.ci_low:+.3f}, {s.ci_high:+.3f}] after "
                     f"{s.pairs} seeds, **{s.verdict.value.upper()}** "
                     f"({'passes' if s.verdict is want else 'FAILS'}: must be {want.value}).")
    if cal.aa:
        lines.append(
            f"- A/A test, DeltaNet against DeltaNet with another initialisation, {len(cal.aa)} "
            f"repeats of the sequential schedule: BETTER {aa_better}, WORSE {aa_worse}, "
            f"INDISTINGUISHABLE {len(cal.aa) - aa_better - aa_worse}: false-BETTER rate "
            f"**{cal.false_better_rate():.0%}**; seeds used "
            f"{', '.join(str(c.stats.pairs) for c in capped)}.")
        if half:
            lines.append(f"- Paired-interval half-width at the seed cap ({b.schedule.cap}): "
                         f"median **{median(half):.3f}** (range "
                         f"{min(half):.3f}-{max(half):.3f}) over the A/A repeats that reached it.")
        lines.append(_evaluation_cost(cal))
    return "\n".join(lines)


def _evaluation_cost(cal: Calibration) -> str:
    """What a candidate's full evaluation costs, from the A/A repeats. Wall time only from the
    repeats this sitting trained in full: one read back from the run cache took no time, and
    its median would say an evaluation is free. CPU time is the runs' own, wherever trained."""
    what = (f"- A candidate's full evaluation with the baseline cached (each A/A repeat: a lr "
            f"choice and up to {cal.budget.schedule.cap} seeds, {cal.workers} worker processes)")
    cpu = [sum(r.result.timings.cpu_s for r in c.runs if r.role is Role.CANDIDATE)
           for c in cal.aa]
    timed = [c.cost.wall_s for c in cal.aa if c.cost.candidate_runs and not c.cost.candidate_cached]
    if not timed:
        return (f"{what}: median {median(cpu):.0f} CPU-s in its training runs; wall time not "
                f"measured in this sitting (every repeat was read back from the run cache).")
    return (f"{what}: median **{median(timed):.0f} s** wall (max {max(timed):.0f} s) over the "
            f"{len(timed)} repeat(s) trained in this sitting; median {median(cpu):.0f} CPU-s in "
            f"the training runs of all {len(cpu)}.")


def _runs_behind(cal: Calibration) -> str:
    """What the table's training runs cost when they were trained, whichever sitting that was:
    a calibration that resumes reads most of them back from the run cache."""
    runs = {}  # by the run cache's own key: a run shared by several comparisons counts once
    for c in [r.comparison for r in cal.rows] + [c for _, c in cal.controls] + list(cal.aa):
        for run in c.runs:
            spec = c.candidate if run.role is Role.CANDIDATE else c.baseline
            key = RunKey.of(spec, c.budget.key, run.problem, run.seed, run.hyper.lr,
                            run.hyper.weight_decay, run.shape, c.device)
            runs[key.digest] = run
    cpu = sum(r.result.timings.cpu_s for r in runs.values())
    cached = sum(r.cached for r in runs.values())
    return (f"the {len(runs)} training runs behind it took {cpu / 60:.0f} CPU-min "
            f"({cached} of them read back from the run cache in this sitting)")


def _problem_table(cal: Calibration) -> list[str]:
    """Each problem's metric per mixer, for a score averaged over several (MAD's six tasks):
    which tasks separate the mixers and which sit at the ceiling or at chance."""
    names = [p.name for p, _ in cal.budget.problems]
    prefix = os.path.commonprefix(names)
    prefix = prefix[:prefix.rfind("-") + 1]
    sign = -1.0 if cal.budget.metric.higher_is_better else 1.0
    lines = [f"Per problem ({cal.budget.problems[0][0].metric.name} at the rate each mixer kept, "
             f"mean over the seeds):", "",
             "| mixer | " + " | ".join(n[len(prefix):] for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for row in sorted(cal.rows, key=lambda r: sign * r.mean):
        role = Role.BASELINE if row.reference.role == "baseline" else Role.CANDIDATE
        means = row.comparison.problem_means(role)
        lines.append(f"| {row.reference.label} | "
                     + " | ".join(f"{means[n]:.3f}" for n in names) + " |")
    return lines


def write_block(path: Path, block: str, task: TaskKind = TaskKind.MQAR,
                name: str | None = None) -> None:
    """Replace the text between the task's (or the named block's) markers in `path`."""
    start, end = markers(task, name)
    text = path.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} block to replace")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{block}\n{end}{tail}", encoding="utf-8")


def calibration_json(cal: Calibration) -> dict:
    from .report import comparison_json

    tau, n_tau = cal.tau()
    rho, tau_half = cal.split_half()
    return {"budget_key": cal.budget.key, "preset": cal.budget.preset.value,
            "seeds": list(cal.seeds), "wall_s": cal.wall_s, "cpu_s": cal.cpu_s,
            "load_before": list(cal.load_before), "load_after": list(cal.load_after),
            "kendall_tau_b": tau, "tau_mixers": n_tau, "split_half_spearman": rho,
            "split_half_kendall": tau_half, "false_better_rate": cal.false_better_rate(),
            "rows": [{"label": r.reference.label, "values": list(r.values), "mean": r.mean,
                      "published": r.reference.published,
                      "comparison": comparison_json(r.comparison)} for r in cal.rows],
            "controls": [{"label": ref.label, "comparison": comparison_json(c)}
                         for ref, c in cal.controls],
            "aa": [comparison_json(c) for c in cal.aa]}


def calibrate_main(argv: list[str] | None = None) -> int:
    """Entry point of `linarch calibrate`."""
    import torch

    parser = argparse.ArgumentParser(prog="linarch calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=[t.value for t in REFERENCES], default="mqar")
    parser.add_argument("--preset", choices=[p.value for p in Preset], default="proxy")
    parser.add_argument("--seeds", type=int, default=6, help="seeds per reference mixer")
    parser.add_argument("--aa", type=int, default=10, help="A/A repeats (0: none)")
    parser.add_argument("--store", type=Path, default=Path("runs/calibration.sqlite"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--match", choices=[t.value for t in MatchTarget], default="none",
                        help="how each mixer's width is set; default: the configuration its "
                             "published number was measured at (Zoology's protocol)")
    parser.add_argument("--block", default=None,
                        help="write to the markers of this block name instead of the task's")
    parser.add_argument("--only", nargs="*", default=None, help="reference labels to run")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="the repository root (where examples/ and benchmarks/ are)")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    parser.add_argument("--write", type=Path, default=None,
                        help="markdown file whose calibration block to replace")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    task = TaskKind(args.task)
    refs = REFERENCES[task] if args.only is None else tuple(
        r for r in REFERENCES[task] if r.label in args.only or r.role == "baseline")
    budget = budget_for(task, Preset(args.preset))
    cal = calibrate(budget, tuple(range(args.seeds)), ExperimentStore(args.store),
                    references=refs, root=args.root, aa_repeats=args.aa, workers=args.workers,
                    match=MatchTarget(args.match), log=lambda line: print(line, flush=True))
    block = table_markdown(cal)
    print(block)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(calibration_json(cal), indent=1, default=str))
    if args.write is not None:
        write_block(args.write, block, task, args.block)
    return 0


if __name__ == "__main__":
    raise SystemExit(calibrate_main())
