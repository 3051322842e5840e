"""Wiring: from a config and a run directory to a running SearchLoop.

This is the only module that knows which concrete parts a config names: the compiler's
`check` and `analyze`, the evaluation function, the proposer ("llm" or an import path to a
factory), the LLM client, the memory and the executor. Everything else receives them.

A factory named in `components.proposer` is called with one ProposerContext and returns an
object with `propose(parents, inspirations, memory) -> Proposal`.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from linarch.search.llm import LLMClient
from linarch.search.loop import Components, RunSummary, SearchLoop, SeedProgram
from linarch.search.memory import LessonStore, Memory
from linarch.search.progress import Progress, make_progress
from linarch.search.proposer import LLMProposer, Proposer
from linarch.search.researcher import DEFAULT_OBJECTIVE, Researcher
from linarch.search.rundir import RunDir
from linarch.search.schema import connect

_REFERENCE_EXAMPLES = ("deltanet", "gated_deltanet", "fusion_gated_fir")


@dataclass(frozen=True)
class ProposerContext:
    config: SearchConfig
    run: RunDir
    check: CheckFn
    client: LLMClient | None
    memory: Memory | None
    language_reference: str


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
    run = RunDir.create(run_path, text)
    config = run.config()
    seeds = run.path / "seeds"
    seeds.mkdir(exist_ok=True)
    for i, spec in enumerate(config.run.seed_programs):
        if spec.startswith("example:"):
            src = example_path(spec.split(":", 1)[1])
        else:
            src = Path(spec) if Path(spec).is_absolute() else config_path.parent / spec
        if not src.exists():
            raise ConfigError(f"seed program {spec!r} not found at {src}")
        (seeds / f"{i:02d}-{src.stem}.lin").write_text(src.read_text(encoding="utf-8"))
    return run


def seed_programs(run: RunDir) -> list[SeedProgram]:
    return [
        SeedProgram(p.stem.split("-", 1)[1], p.read_text(encoding="utf-8"))
        for p in sorted((run.path / "seeds").glob("*.lin"))
    ]


def language_reference(config: SearchConfig, run: RunDir) -> str:
    """The DSL reference the prompts carry: a configured file, else example programs."""
    if config.llm.language_reference:
        path = Path(config.llm.language_reference)
        return (path if path.is_absolute() else run.path / path).read_text(encoding="utf-8")
    parts = ["The language by example (each program below compiles):"]
    for name in _REFERENCE_EXAMPLES:
        path = example_path(name)
        if path.exists():
            parts.append(f"```lin\n{path.read_text(encoding='utf-8').rstrip()}\n```")
    return "\n\n".join(parts)


def build_components(config: SearchConfig, run: RunDir) -> Components:
    store = connect(run.store_path(config))
    memory = Memory(load_cognition(), LessonStore(store, run.name))
    check = resolve(config.components.check)
    analyze = resolve(config.components.analyze)
    if not config.components.evaluate:
        raise ConfigError("components.evaluate must name the evaluation function")
    evaluate = resolve(config.components.evaluate)
    wants_llm = config.components.proposer == "llm" or config.memory.analyze
    client = LLMClient(config.llm, run.transcript) if wants_llm else None
    reference = language_reference(config, run)
    proposer: Proposer
    if config.components.proposer == "llm":
        assert client is not None
        objective = DEFAULT_OBJECTIVE.format(preset=config.run.preset)
        proposer = LLMProposer(
            Researcher(client, reference, objective),
            Engineer(client, check, reference, config.engineer.max_repairs),
        )
    else:
        factory = resolve(config.components.proposer)
        proposer = factory(ProposerContext(config, run, check, client, memory, reference))
    analyst = None
    if config.memory.analyze and client is not None:
        analyst = Analyzer(client, memory, len(config.cascade))
    return Components(
        proposer=proposer,
        check=check,
        analyze=analyze,
        evaluate=evaluate,
        analyst=analyst,
        memory=memory,
        ledger=None if client is None else client.ledger,
        store=store,
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
        ex: Executor = make_executor(executor or config.executor, log_dir=run.logs)
        display = make_progress(progress) if isinstance(progress, str) else progress
        try:
            loop = SearchLoop(config, run, components, ex, seed_programs=seed_programs(run),
                              progress=display)
            return loop.run()
        finally:
            ex.shutdown()
            if components.store is not None:
                components.store.close()
            close = getattr(display, "close", None)
            if close is not None:
                close()


def override_executor(config: ExecutorConfig, **changes: Any) -> ExecutorConfig:
    """The executor section with command-line overrides (None = keep)."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
