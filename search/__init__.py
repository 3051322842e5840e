"""linarch.search: an LLM-driven (or offline) architecture search over linarch programs.

    from linarch.search import load_config, create_run, run_search, write_report

    run = create_run("search.toml", "runs/first")     # config + seed programs
    summary = run_search(run)                          # propose, check, evaluate, archive
    write_report(run)                                  # leaderboard, plots, HTML

The pieces are importable on their own: Proposer/Proposal (the seam for new proposers),
EvalJob/EvalResult (the seam for the evaluation harness), LocalExecutor/RayExecutor,
Archive, LLMClient, Memory. Names resolve lazily: spawned evaluation workers import this
package, and must not pay for openai or ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Archive": "archive",
    "BudgetExhausted": "ledger",
    "Candidate": "records",
    "Components": "loop",
    "EndpointDown": "llm",
    "EvalJob": "records",
    "EvalResult": "records",
    "JobResult": "sandbox",
    "Limits": "sandbox",
    "LLMClient": "llm",
    "LLMProposer": "proposer",
    "LocalExecutor": "executor",
    "Memory": "memory",
    "Outcome": "sandbox",
    "Profile": "records",
    "Proposal": "proposer",
    "Proposer": "proposer",
    "RayExecutor": "ray_executor",
    "RunDir": "rundir",
    "RunSummary": "loop",
    "SearchConfig": "config",
    "SearchLoop": "loop",
    "SeedProgram": "loop",
    "create_run": "session",
    "load_config": "config",
    "make_executor": "executor",
    "run_search": "session",
    "write_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'linarch.search' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"linarch.search.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
