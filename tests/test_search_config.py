"""The TOML configuration, the run directory, the wiring, and the loop on the real compiler."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_search_loop import ScriptedProposer, check_journal, config_text

import linarch
from linarch.search import config as config_module
from linarch.search.config import ConfigError, loads_config
from linarch.search.jsonl import read_jsonl
from linarch.search.ledger import Price
from linarch.search.loop import Components, SearchLoop
from linarch.search.records import EvalJob, EvalResult
from linarch.search.rundir import RunDir, RunDirError
from linarch.search.session import create_run, example_path, language_reference, seed_programs
from linarch_testing.search_fakes import InlineExecutor


def test_the_documented_example_config_parses():
    text = config_module.__doc__.split("Example:\n", 1)[1]
    config = loads_config(text)
    assert config.run.max_candidates == 40 and config.run.seeds == (0, 1, 2)
    assert config.llm.model_for("analyzer") == "gpt-4o"
    assert config.llm.models_for("researcher") == ("gpt-4o-mini", "o3-mini")
    assert config.llm.model_for("engineer") == "gpt-4o-mini"
    assert config.llm.prices["gpt-4o-mini"] == Price(0.00015, 0.0006)
    # options are sent only when set; a model's own table replaces the [llm] ones
    assert config.llm.sampling_for("gpt-4o-mini") == {"temperature": 0.7}
    assert config.llm.sampling_for("o3-mini") == {"max_completion_tokens": 8000}
    assert [(s.stage, s.min_score) for s in config.cascade] == [
        ("static", None), ("mqar", -0.2), ("mad", None)]
    assert config.executor.memory_limit_mb == 6000 and config.islands.selection == "weighted"


def test_the_readme_endpoint_example_parses_and_names_a_model_for_every_role():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    config = loads_config(block)
    assert config.llm.base_url == "http://localhost:8000/v1" and config.llm.budget_usd == 5.0
    for role in ("researcher", "engineer", "analyzer"):
        assert config.llm.model_for(role) == "gpt-4o-mini"


def test_defaults():
    config = loads_config("")
    assert config.executor.kind == "local" and config.llm.budget_usd is None
    assert config.run.seed_programs == ("example:deltanet",)
    assert [s.stage for s in config.cascade] == ["static", "numerics", "mqar"]
    assert config.run.preset == "proxy"
    assert config.executor.memory_limit_mb == 6000  # workers have a memory limit by default
    assert config.islands.selection == "weighted" and config.max_proposals == 60
    assert config.llm.sampling_for("gpt-4o-mini") == {}  # nothing a reasoning model refuses
    assert config.components.vet == "linarch.search.vet:vet"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[run]\nmax_candidate = 3", "unknown key"),
        ("[runs]\nx = 1", "unknown key"),
        ("[llm]\nbudget_usd = 1.0", "no \\[llm.prices.MODEL\\]"),
        ("[islands]\nselection = 'random'", "selection"),
        ("[executor]\nmemory_limit_mb = -1", "memory_limit_mb"),
        ("[guard]\ntime_limit_s = 0", "guard.time_limit_s"),
        ("[run]\nproposal_workers = -1", "proposal_workers"),
        ("[executor]\nkind = 'slurm'", "executor.kind"),
        ("[[cascade]]\nstage = 'a'\n[[cascade]]\nstage = 'a'", "duplicate cascade"),
        ("[llm.prices.m]\ninput = 1.0", "unknown key"),
        ("run = 3", "must be a table"),
    ],
)
def test_bad_configs_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        loads_config(text)


def test_model_for_without_default():
    config = loads_config("[llm.models]\nresearcher = 'a'")
    assert config.llm.model_for("researcher") == "a"
    with pytest.raises(ConfigError, match="analyzer"):
        config.llm.model_for("analyzer")


def test_run_directory_lifecycle(tmp_path):
    run = RunDir.create(tmp_path / "r", "[run]\nmax_candidates = 1\n")
    assert run.config().run.max_candidates == 1 and run.programs.is_dir()
    with pytest.raises(RunDirError, match="already holds a run"):
        RunDir.create(tmp_path / "r", "")
    with pytest.raises(RunDirError, match="not a run directory"):
        RunDir.open(tmp_path / "elsewhere")
    with pytest.raises(ConfigError):
        RunDir.create(tmp_path / "bad", "[nope]\n")
    with run.lock(), pytest.raises(RunDirError, match="in use"), RunDir.open(run.path).lock():
        pass
    with run.lock():  # released after use
        pass
    assert run.store_path(run.config()) == run.path / "store.sqlite"
    shared = loads_config("[run]\nstore = '../shared.sqlite'")
    assert run.store_path(shared) == (tmp_path / "shared.sqlite").resolve()


def test_create_run_copies_seed_programs(tmp_path):
    (tmp_path / "mine.lin").write_text("mixer Mine\n")
    (tmp_path / "search.toml").write_text(
        '[run]\nseed_programs = ["example:deltanet", "mine.lin"]\n')
    run = create_run(tmp_path / "search.toml", tmp_path / "run")
    seeds = seed_programs(run)
    assert [s.name for s in seeds] == ["deltanet", "mine"]
    assert seeds[0].source == example_path("deltanet").read_text()
    (tmp_path / "missing.toml").write_text('[run]\nseed_programs = ["nowhere.lin"]\n')
    with pytest.raises(ConfigError, match="nowhere.lin"):
        create_run(tmp_path / "missing.toml", tmp_path / "run2")


def test_the_baseline_is_deltanet_unless_the_config_names_another_program(tmp_path):
    """run.baseline is copied into the run (a resume, the workers and the report read that
    copy); a baseline that is missing or does not check stops the run before it starts."""
    from linarch.search.rundir import baseline_source

    (tmp_path / "plain.toml").write_text("[run]\nseed_programs = []\n")
    run = create_run(tmp_path / "plain.toml", tmp_path / "default")
    assert run.baseline_source() == example_path("deltanet").read_text()
    assert run.baseline_name() == "DeltaNet"
    (tmp_path / "la.toml").write_text(
        '[run]\nseed_programs = []\nbaseline = "example:linear_attention"\n')
    run = create_run(tmp_path / "la.toml", tmp_path / "la")
    assert run.baseline.read_text() == example_path("linear_attention").read_text()
    assert baseline_source(str(run.path)) == run.baseline.read_text()  # what a worker reads
    assert run.baseline_name() == "LinearAttention"
    assert baseline_source("") == example_path("deltanet").read_text()  # no run: the default
    (tmp_path / "broken.lin").write_text("mixer Broken:\n    y = nowhere\n")
    (tmp_path / "broken.toml").write_text('[run]\nseed_programs = []\nbaseline = "broken.lin"\n')
    with pytest.raises(ConfigError, match=r"run.baseline 'broken.lin' does not check: .*broken"):
        create_run(tmp_path / "broken.toml", tmp_path / "broken")
    (tmp_path / "gone.toml").write_text('[run]\nseed_programs = []\nbaseline = "gone.lin"\n')
    with pytest.raises(ConfigError, match="run.baseline 'gone.lin' not found"):
        create_run(tmp_path / "gone.toml", tmp_path / "gone")
    assert not (tmp_path / "gone").exists()  # nothing half-made: the same command can retry


def test_language_reference_is_the_condensed_docs_and_resolves_next_to_the_config(tmp_path):
    """By default the roles get the condensed reference (every program in it compiles, every
    builtin and parameter kind is named in it); a configured path is read relative to the
    config file, not the run folder, and copied into the run so a resume reads the same."""
    from linarch.dsl.builtins import BUILTINS
    from linarch.dsl.params import PARAM_KINDS

    (tmp_path / "plain.toml").write_text("[run]\nseed_programs = []\n")
    run = create_run(tmp_path / "plain.toml", tmp_path / "r")
    text = language_reference(run.config(), run)
    programs = [block.split("```", 1)[0] for block in text.split("```lin\n")[1:]]
    assert len(programs) >= 2 and len(text) < 12_000  # condensed: docs/language.md is ~35 kB
    for program in programs:
        assert [d for d in linarch.check(program) if d.severity == "error"] == []
    for name in (*BUILTINS, *PARAM_KINDS):
        assert f"`{name}" in text or f"{name}(" in text or f" {name}" in text, name
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "ref.md").write_text("THE REFERENCE")
    (folder / "s.toml").write_text("[run]\nseed_programs = []\n"
                                   "[llm]\nlanguage_reference = 'ref.md'\n")
    run = create_run(folder / "s.toml", tmp_path / "elsewhere" / "run")
    assert language_reference(run.config(), run) == "THE REFERENCE"
    (folder / "ref.md").write_text("EDITED LATER")  # a resume reads the run's copy
    assert language_reference(RunDir.open(run.path).config(), run) == "THE REFERENCE"
    (folder / "bad.toml").write_text("[llm]\nlanguage_reference = 'missing.md'\n")
    with pytest.raises(ConfigError, match="missing.md.*config file's folder"):
        create_run(folder / "bad.toml", tmp_path / "run3")


def test_models_per_role_lists_and_request_options():
    config = loads_config("[llm.models]\nresearcher = ['a', 'b']\nengineer = ['c']\n"
                          "default = 'd'\n[llm.options.b]\nmax_completion_tokens = 100\n")
    assert config.llm.models_for("researcher") == ("a", "b")
    assert config.llm.model_for("engineer") == "c" and config.llm.model_for("analyzer") == "d"
    assert config.llm.sampling_for("a") == {} and config.llm.sampling_for("b") == {
        "max_completion_tokens": 100}
    for bad in ("researcher = []", "researcher = [1]", "researcher = 3"):
        with pytest.raises(ConfigError, match="llm.models.researcher"):
            loads_config(f"[llm.models]\n{bad}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        loads_config("[llm.options.b]\ntemperatur = 1.0\n")
    with pytest.raises(ConfigError, match="model"):
        loads_config("[llm]\nbudget_usd = 1.0\n[llm.models]\nresearcher = ['a', 'b']\n"
                     "[llm.prices.a]\ninput_per_1k = 1.0\n")  # b has no price


def evaluate_by_cost(job: EvalJob) -> EvalResult:
    """A synthetic score from the real compiler's numbers: less state and FLOPs is better."""
    a = linarch.analyze(job.source)
    score = -1e-9 * a.flops_per_token - 1e-8 * a.state_bytes
    return EvalResult(score, score - 1e-3, score + 1e-3, "tie", {"flops": a.flops_per_token})


def test_loop_on_the_real_compiler(tmp_path):
    """check, analyze, structural hash and WL features from linarch itself."""
    delta = example_path("deltanet").read_text()
    renamed = delta.replace("beta", "rate")  # same computation: rejected by hash
    leaky = delta.replace("o = S @ q", "o = S @ q + mean(v, over = time)")
    sources = [example_path(n).read_text() for n in ("gated_deltanet", "gla", "kda")]
    proposer = ScriptedProposer([renamed, leaky, *sources])
    text = config_text(max_candidates=5).replace('min_score = 0.0', 'min_score = -1.0')
    run = RunDir.create(tmp_path / "run", text)
    comps = Components(proposer, linarch.check, linarch.analyze, evaluate_by_cost)
    from linarch.search.loop import SeedProgram

    loop = SearchLoop(run.config(), run, comps, InlineExecutor(2),
                      seed_programs=[SeedProgram("deltanet", delta)])
    summary = loop.run()
    events = read_jsonl(run.journal)
    check_journal(events)
    rejected = {e["id"]: e for e in events if e["event"] == "rejected"}
    assert rejected["c0001"]["reason"] == "duplicate" and rejected["c0001"]["nearest"] == "s000"
    assert rejected["c0002"]["reason"] == "invalid"
    assert rejected["c0002"]["diagnostics"][0]["code"].startswith("LA")
    assert summary.evaluated == 4
    archive = loop.state.archive
    names = {c.profile.name for c in archive.candidates.values()}
    assert names == {"DeltaNet", "GatedDeltaNet", "GatedLinearAttention", "KimiDeltaAttention"}
    cells = {c.profile.descriptor.cell for c in archive.candidates.values()}
    assert len(cells) == 4  # four mechanisms, four cells
    gla = next(c for c in archive.candidates.values() if c.profile.name.startswith("GatedLin"))
    assert gla.profile.descriptor.transition == "diagonal decay"


def test_evaluation_workers_do_not_import_openai_or_ray():
    import subprocess
    import sys

    code = ("import sys, linarch.search.sandbox, linarch.search.records, "
            "linarch.search.proposer; print('openai' in sys.modules or 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_plain_progress_prints_events_and_changed_status():
    import io

    from linarch.search.progress import NullProgress, PlainProgress, Status, make_progress

    stream = io.StringIO()
    progress = PlainProgress(stream)
    progress.event("c0001", "evaluated: score +0.0100")
    status = Status(proposals=1, max_candidates=4, evaluated=1, in_flight=0,
                    rejections={"duplicate": 2}, outcomes={"ok": 1, "oom": 1},
                    best_id="c0001", best_score=0.01, spent_usd=0.5, budget_usd=2.0)
    progress.status(status)
    progress.status(status)  # unchanged: printed once
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("c0001: evaluated: score +0.0100")
    assert "best c0001 +0.0100" in lines[1] and "$0.5000/2.00" in lines[1]
    assert "rejected: duplicate 2" in lines[1] and "failed: oom 1" in lines[1]
    assert isinstance(make_progress("none"), NullProgress)
    assert isinstance(make_progress("plain"), PlainProgress)


def test_eval_result_from_the_evaluation_paired_comparison():
    from linarch.evaluation.stats import paired_comparison

    loss = paired_comparison("loss", False, [2.0, 2.1, 1.9], [2.2, 2.25, 2.1])
    r = EvalResult.from_comparison(loss, seeds=(0, 1, 2))
    assert r.score == pytest.approx(-loss.mean_difference) and r.score > 0
    assert (r.ci_low, r.ci_high) == pytest.approx((-loss.ci_high, -loss.ci_low))
    assert r.verdict == "better" and r.seeds == (0, 1, 2) and r.metrics == {"loss": r.score}
    acc = paired_comparison("acc", True, [0.5, 0.6], [0.55, 0.58])
    r = EvalResult.from_comparison(acc, metrics={"acc": 0.55})
    assert r.score == pytest.approx(acc.mean_difference) and r.verdict == "indistinguishable"
    assert EvalResult.from_dict(r.to_dict()) == r


def test_command_line_overrides_and_errors(tmp_path, capsys):
    from linarch.search import cli
    from linarch.search.session import override_executor

    base = loads_config("[executor]\nworkers = 4\n").executor
    ray = override_executor(base, kind="ray", address="127.0.0.1:6379", workers=None)
    assert (ray.kind, ray.address, ray.workers) == ("ray", "127.0.0.1:6379", 4)
    assert cli.main(["run", "--resume", str(tmp_path / "nothing")]) == 1
    assert "not a run directory" in capsys.readouterr().err
    assert cli.main(["run"]) == 2
    (tmp_path / "c.toml").write_text("[run]\nmax_candidates = 1\n")
    assert cli.main(["run", str(tmp_path / "c.toml")]) == 2  # a new run needs --run-dir


def test_the_quick_config_parses_and_builds_its_parts(tmp_path):
    """examples/search/quick.toml: the offline proposer behind the guard, real vetting."""
    from linarch.api import EXAMPLES
    from linarch.search.offline import OfflineProposer
    from linarch.search.session import build_components

    quick = EXAMPLES / "search" / "quick.toml"
    run = create_run(quick, tmp_path / "quick")
    config = run.config()
    assert config.run.max_candidates >= 20 and config.islands.selection == "weighted"
    assert [s.stage for s in config.cascade] == ["static", "numerics", "lm"]
    assert config.run.preset == "quick" and not config.racing.enabled  # about 30 min on 2 cores
    comps = build_components(config, run)
    try:
        assert isinstance(comps.proposer, OfflineProposer)
        assert comps.proposer.frontend is comps.frontend and comps.frontend.guard is not None
        assert comps.vet is not None and comps.analyst is None
    finally:
        comps.frontend.close()
        comps.store.close()


def test_offline_search_on_the_real_compiler_end_to_end(tmp_path):
    """The production path without training: real check/analyze and mutation moves behind
    the guard, real vetting in sandboxed workers (trained shape, fingerprint), a synthetic
    score from the compiler's costs."""
    from linarch.search.executor import LocalExecutor
    from linarch.search.sandbox import Limits
    from linarch.search.session import build_components, seed_programs
    from linarch.search.state import RunState

    (tmp_path / "s.toml").write_text("""
[run]
max_candidates = 2
proposal_workers = 1
preset = "proxy"
seeds = [0]
seed_programs = ["example:deltanet"]
[[cascade]]
stage = "static"
[[cascade]]
stage = "mqar"
[components]
evaluate = "linarch_testing.search_fakes:cost_evaluate"
""")
    run = create_run(tmp_path / "s.toml", tmp_path / "run")
    config = run.config()
    comps = build_components(config, run)
    try:
        with LocalExecutor(workers=2, limits=Limits(time_s=300)) as ex:
            summary = SearchLoop(config, run, comps, ex, seed_programs=seed_programs(run)).run()
    finally:
        comps.frontend.close()
        comps.store.close()
    assert summary.candidates == 2 and summary.reason == "max_candidates"
    events = read_jsonl(run.journal)
    check_journal(events)
    vetted = [e for e in events if e["event"] == "vetted"]
    assert len(vetted) >= 3
    for e in vetted:  # the proxy's d_model 64, width-matched to DeltaNet's parameter count
        assert 32 <= dict(e["profile"]["shape"])["hidden_size"] <= 96
        assert len(e["profile"]["fingerprint"]) == 64
    seed = next(e for e in vetted if e["id"] == "s000")
    assert dict(seed["profile"]["shape"]) == {"hidden_size": 64, "num_heads": 2}
    archive = RunState.replay(config, events).archive
    assert archive.candidates["s000"].profile.state_bytes == 4 * 2 * 32 * 32


@pytest.mark.parametrize("name", ["rediscover_linear_attention", "rediscover_weak_deltanet"])
def test_the_rediscovery_configs_compare_with_their_own_seed(tmp_path, name):
    """The rediscovery runs of docs/search.md: one seed program, and it is the baseline, so the
    confirmation's BETTER means better than where the search started."""
    from linarch.api import EXAMPLES

    run = create_run(EXAMPLES / "search" / f"{name}.toml", tmp_path / name)
    (seed,) = seed_programs(run)
    assert seed.source == run.baseline_source()
    config = run.config()
    assert config.confirm.top >= 1 and not set(config.confirm.seeds) & {
        *config.run.seeds, *config.racing.seeds}
