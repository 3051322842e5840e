"""Wiring: from a config and a run directory to a running SearchLoop.

This is the only module that knows which concrete parts a config names: the compiler's
`check` and `analyze` (behind the front-end guard), the vetting and evaluation functions, the
proposer ("llm" or an import path to a factory), the LLM client, the memory and the executor.
Everything else receives them.

A factory named in `components.proposer` is called with one ProposerContext and returns an
object with `propose(request: ProposalRequest) -> Proposal`.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linarch.api import check as check_program
from linarch.api import example_path
from linarch.search.analyzer import Analyzer
from linarch.search.cognition import load_cognition
from linarch.search.config import (
    ConfigError,
    ExecutorConfig,
    SearchConfig,
    dumps_toml,
    loads_config,
)
from linarch.search.engineer import CheckFn, Engineer
from linarch.search.executor import Executor, make_executor
from linarch.search.frontend import FrontEnd
from linarch.search.guard import Guard, GuardLimits
from linarch.search.llm import LLMClient
from linarch.search.loop import Components, RunSummary, SearchLoop, SeedProgram
from linarch.search.memory import LessonStore, Memory
from linarch.search.progress import Progress, make_progress
from linarch.search.proposer import LLMProposer, Proposer
from linarch.search.researcher import DEFAULT_OBJECTIVE, Researcher
from linarch.search.rundir import RunDir
from linarch.search.schema import connect
from linarch.search.templates import PROMPTS_DIR

DEFAULT_REFERENCE = PROMPTS_DIR / "reference" / "language.md"
RUN_REFERENCE = "language_reference.md"  # the run's own copy, next to config.toml


@dataclass(frozen=True)
class ProposerContext:
    config: SearchConfig
    run: RunDir
    check: CheckFn
    client: LLMClient | None
    memory: Memory | None
    language_reference: str
    frontend: FrontEnd | None = None  # check, analyze and mutation moves behind the guard


def resolve(spec: str) -> Any:
    """"package.module:attribute" -> the attribute."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"expected 'module:attribute', got {spec!r}")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot load {spec!r}: {err}") from err


ABLATIONS = ("best-of-n",)


def create_run(config_path: Path | str, run_path: Path | str,
               ablation: str | None = None) -> RunDir:
    """A new run directory holding the config and a copy of each seed program.

    ``ablation="best-of-n"`` records the run as the best-of-N baseline: every parent is a seed
    program (islands.selection = "seeds"), so a run can show whether evolution beats sampling.
    """
    config_path = Path(config_path)
    text = config_path.read_text(encoding="utf-8")
    if ablation is not None:
        if ablation not in ABLATIONS:
            raise ConfigError(f"unknown ablation {ablation!r}; choose one of {ABLATIONS}")
        import tomllib

        data = tomllib.loads(text)
        data.setdefault("islands", {})["selection"] = "seeds"
        data.setdefault("run", {})["name"] = data.get("run", {}).get("name", "search") + "-bestofn"
        text = dumps_toml(data)
        loads_config(text)  # the rewritten file must still be a valid configuration
    config = loads_config(text)
    # Everything the run reads from outside is resolved first: a config that names a missing
    # program leaves no half-made run behind.
    reference = _reference_path(config.llm.language_reference, config_path.parent)
    seeds = [_program_path("seed program", spec, config_path.parent)
             for spec in config.run.seed_programs]
    baseline = _program_path("run.baseline", config.run.baseline, config_path.parent)
    errors = [d for d in check_program(baseline) if d.is_error]
    if errors:
        raise ConfigError(f"run.baseline {config.run.baseline!r} does not check: {baseline}:"
                          f"{errors[0].line}: {errors[0].message}")
    run = RunDir.create(run_path, text)
    (run.path / RUN_REFERENCE).write_text(reference.read_text(encoding="utf-8"),
                                          encoding="utf-8")
    (run.path / "seeds").mkdir(exist_ok=True)
    for i, src in enumerate(seeds):
        (run.path / "seeds" / f"{i:02d}-{src.stem}.lin").write_text(
            src.read_text(encoding="utf-8"))
    run.baseline.write_text(baseline.read_text(encoding="utf-8"), encoding="utf-8")
    return run


def _program_path(what: str, spec: str, base: Path) -> Path:
    """A program a config names: "example:NAME", or a path relative to the config's folder."""
    if spec.startswith("example:"):
        src = example_path(spec.split(":", 1)[1])
        if not src.is_file():
            raise ConfigError(f"{what} {spec!r} not found at {src}")
        return src
    return _config_file(what, spec, base)


def _config_file(what: str, configured: str, base: Path) -> Path:
    """A file a config names: absolute, or relative to the config file's folder."""
    path = Path(configured).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise ConfigError(f"{what} {configured!r} not found at {path} (a relative path is "
                          "read from the config file's folder)")
    return path


def seed_programs(run: RunDir) -> list[SeedProgram]:
    return [
        SeedProgram(p.stem.split("-", 1)[1], p.read_text(encoding="utf-8"))
        for p in sorted((run.path / "seeds").glob("*.lin"))
    ]


def _reference_path(configured: str, base: Path) -> Path:
    """The language reference a config names, relative to the config file's folder; the
    condensed reference shipped with linarch when it names none."""
    if not configured:
        return DEFAULT_REFERENCE
    return _config_file("llm.language_reference", configured, base)


def language_reference(config: SearchConfig, run: RunDir) -> str:
    """The DSL reference the prompts carry: the copy made when the run was created (so a
    resumed run reads what it started with), else the configured file read relative to the
    run directory's config.toml, else the shipped condensed reference."""
    copy = run.path / RUN_REFERENCE
    if copy.is_file():
        return copy.read_text(encoding="utf-8")
    return _reference_path(config.llm.language_reference, run.path).read_text(encoding="utf-8")


def build_frontend(config: SearchConfig, run: RunDir, check: CheckFn, analyze: Any) -> FrontEnd:
    """check/analyze/mutation behind a guard worker with the configured limits."""
    limits = GuardLimits(time_s=config.guard.time_limit_s,
                         memory_mb=config.guard.memory_limit_mb,
                         hidden_env=_hidden_env(config))
    return FrontEnd(check, analyze, Guard(limits, run.logs), config.islands.wl_iterations)


def _hidden_env(config: SearchConfig) -> tuple[str, ...]:
    return (config.llm.api_key_env,) if config.llm.api_key_env else ()


def build_components(config: SearchConfig, run: RunDir) -> Components:
    store = connect(run.store_path(config))
    memory = Memory(load_cognition(), LessonStore(store, run.name))
    check = resolve(config.components.check)
    analyze = resolve(config.components.analyze)
    if not config.components.evaluate:
        raise ConfigError("components.evaluate must name the evaluation function")
    evaluate = resolve(config.components.evaluate)
    vet = resolve(config.components.vet) if config.components.vet else None
    frontend = build_frontend(config, run, check, analyze)
    wants_llm = config.components.proposer == "llm" or config.memory.analyze
    client = LLMClient(config.llm, run.transcript) if wants_llm else None
    reference = language_reference(config, run)
    proposer: Proposer
    if config.components.proposer == "llm":
        assert client is not None
        objective = DEFAULT_OBJECTIVE.format(preset=config.run.preset,
                                             baseline=run.baseline_name())
        proposer = LLMProposer(
            Researcher(client, reference, objective),
            Engineer(client, frontend.check, reference, config.engineer.max_repairs),
        )
    else:
        factory = resolve(config.components.proposer)
        proposer = factory(ProposerContext(config, run, frontend.check, client, memory,
                                           reference, frontend))
    analyst = None
    if config.memory.analyze and client is not None:
        analyst = Analyzer(client, len(config.cascade))
    return Components(
        proposer=proposer,
        check=check,
        analyze=analyze,
        evaluate=evaluate,
        analyst=analyst,
        memory=memory,
        ledger=None if client is None else client.ledger,
        store=store,
        frontend=frontend,
        vet=vet,
    )


def run_search(
    run: RunDir,
    *,
    executor: ExecutorConfig | None = None,
    progress: Progress | str = "auto",
) -> RunSummary:
    """Start or resume the run in `run` (the journal tells which) and return its summary."""
    config = run.config()
    with run.lock():
        components = build_components(config, run)
        ex: Executor = make_executor(executor or config.executor, log_dir=run.logs,
                                     hidden_env=_hidden_env(config))
        display = make_progress(progress) if isinstance(progress, str) else progress
        try:
            loop = SearchLoop(config, run, components, ex, seed_programs=seed_programs(run),
                              progress=display)
            return loop.run()
        finally:
            ex.shutdown()
            if components.frontend is not None:
                components.frontend.close()
            if components.store is not None:
                components.store.close()
            close = getattr(display, "close", None)
            if close is not None:
                close()


def override_executor(config: ExecutorConfig, **changes: Any) -> ExecutorConfig:
    """The executor section with command-line overrides (None = keep)."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
