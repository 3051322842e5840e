"""The engineer role: compile a draft with the injected `check`, repair it from diagnostics.

Only DSL text is ever compiled, by the compiler's own `check` (through the guard: a program
that makes the compiler hang or eat memory is a diagnostic, LS901/LS902, not a stuck search);
nothing an LLM writes is run here. Errors go back to the model as the compiler's JSON
diagnostics for up to `max_repairs` rounds. An answer with no program, an empty answer or
Python instead of DSL is sent back the same way, with a diagnostic of the search's own (codes
LS0xx). A candidate that compiled but failed in a worker (code generation, the numerics check,
NaN in training, a timeout) comes back through `repair_runtime` with its log tail. The result
is typed: valid or not, how many repairs, every step taken, and why it failed.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from linarch.search.extract import DraftFailure, Extraction, extract_program
from linarch.search.guard import GuardFailure, GuardTimeout
from linarch.search.llm import LLMClient
from linarch.search.proposer import RuntimeFailure
from linarch.search.records import DiagnosticLike
from linarch.search.researcher import Draft
from linarch.search.templates import load_template

CheckFn = Callable[[str], Sequence[DiagnosticLike]]


class BuildFailure(StrEnum):
    INVALID = "invalid"  # the compiler still reports errors after the last repair
    NO_BLOCK = "no_block"
    PYTHON = "python"
    EMPTY = "empty"
    CHECK_CRASHED = "check_crashed"  # the compiler raised: a compiler bug, not a repair case


_EXTRACTION_DIAGNOSTICS = {
    DraftFailure.NO_BLOCK: (
        "LS001",
        "the answer contains no fenced program",
        "answer with the whole program inside one ```lin ... ``` block",
    ),
    DraftFailure.PYTHON: (
        "LS002",
        "the answer is Python; only linarch programs are compiled",
        "express the same design in linarch and put it in one ```lin block",
    ),
    DraftFailure.EMPTY: (
        "LS003",
        "the answer is empty",
        "answer with the whole program inside one ```lin ... ``` block",
    ),
}


@dataclass(frozen=True)
class BuildStep:
    """One compile attempt: the program tried (if any) and the diagnostics it got."""

    source: str | None
    diagnostics: tuple[dict[str, Any], ...]
    call_id: str  # the LLM call that produced this program


@dataclass(frozen=True)
class Build:
    source: str | None  # the last program tried (valid or not)
    valid: bool
    repairs: int
    steps: tuple[BuildStep, ...]
    diagnostics: tuple[dict[str, Any], ...]  # the last step's diagnostics (warnings if valid)
    failure: BuildFailure | None
    cost_usd: float  # of the repair calls only


class Engineer:
    role = "engineer"

    def __init__(
        self,
        client: LLMClient,
        check: CheckFn,
        language_reference: str,
        max_repairs: int = 3,
        template: str = "engineer_repair.md",
        runtime_template: str = "engineer_runtime.md",
    ):
        self.client = client
        self.check = check
        self.language_reference = language_reference
        self.max_repairs = max_repairs
        self.template = load_template(template)
        self.runtime_template = load_template(runtime_template)

    def build(self, draft: Draft, model: str = "") -> Build:
        return self._build(draft.extraction, draft.completion.call_id, draft.completion.text,
                           draft.extraction.motivation, 0.0, model)

    def repair_runtime(self, failure: RuntimeFailure, model: str = "") -> Build:
        """Ask for a corrected program from a failed run's stage, outcome and log tail, then
        compile (and repair) the answer as any draft. The repair call counts as one repair."""
        prompt = self.runtime_template.render(
            failure=failure.brief(), language_reference=self.language_reference)
        completion = self.client.complete(self.role, prompt, model=model or None)
        build = self._build(extract_program(completion.text), completion.call_id,
                            completion.text, failure.motivation, completion.cost_usd, model)
        return dataclasses.replace(build, repairs=build.repairs + 1)

    def _build(self, extraction: Extraction, call_id: str, answer: str, motivation: str,
               cost: float, model: str) -> Build:
        steps: list[BuildStep] = []
        for repairs in range(self.max_repairs + 1):
            errors, diagnostics, failure = self._compile(extraction)
            steps.append(BuildStep(extraction.source, diagnostics, call_id))
            if failure is None:
                return Build(
                    extraction.source, True, repairs, tuple(steps), diagnostics, None, cost
                )
            if failure is BuildFailure.CHECK_CRASHED or repairs == self.max_repairs:
                return Build(
                    extraction.source, False, repairs, tuple(steps), diagnostics, failure, cost
                )
            prompt = self.template.render(
                source=extraction.source or "",
                previous_answer=_head(answer),
                diagnostics_json=json.dumps(errors, indent=2, sort_keys=True),
                motivation=motivation,
                language_reference=self.language_reference,
                attempt=repairs + 1,
                max_repairs=self.max_repairs,
            )
            completion = self.client.complete(self.role, prompt, model=model or None)
            cost += completion.cost_usd
            extraction, call_id = extract_program(completion.text), completion.call_id
            answer = completion.text
        raise AssertionError("unreachable")

    def _compile(
        self, extraction: Extraction
    ) -> tuple[list[dict[str, Any]], tuple[dict[str, Any], ...], BuildFailure | None]:
        """(errors to send back, all diagnostics, failure or None)."""
        if extraction.failure is not None:
            code, message, hint = _EXTRACTION_DIAGNOSTICS[extraction.failure]
            diag = _diagnostic(code, message, hint)
            return [diag], (diag,), BuildFailure(extraction.failure.value)
        assert extraction.source is not None
        try:
            found = list(self.check(extraction.source))
        except GuardTimeout as err:  # the program's fault (a huge constant): the model repairs
            diag = _diagnostic("LS901", f"the compiler did not finish checking this program: "
                               f"{err}", "a constant or a shape formula is too large to "
                               "evaluate; use small literals (no towers of powers)")
            return [diag], (diag,), BuildFailure.INVALID
        except GuardFailure as err:
            diag = _diagnostic("LS902", f"checking this program failed: {err}",
                               "simplify the program: a constant or a dimension is too large")
            return [diag], (diag,), BuildFailure.INVALID
        except Exception as err:  # a compiler crash is recorded with its traceback, not repaired
            tb = "".join(traceback.format_exception(err))[-4000:]
            diag = _diagnostic("LS900", f"the compiler raised {type(err).__name__}: {err}", tb)
            return [diag], (diag,), BuildFailure.CHECK_CRASHED
        diagnostics = tuple(d.to_dict() for d in found)
        errors = [d.to_dict() for d in found if d.severity == "error"]
        if not errors:
            return [], diagnostics, None
        if extraction.truncated:
            errors.append(
                _diagnostic(
                    "LS004",
                    "the program's fenced block was never closed: the answer was cut off",
                    "write a shorter program that fits in the answer",
                )
            )
        return errors, diagnostics, BuildFailure.INVALID


def _diagnostic(code: str, message: str, hint: str) -> dict[str, Any]:
    return {"code": code, "severity": "error", "message": message, "hint": hint,
            "line": None, "col": None}


def _head(text: str, limit: int = 600) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + " [...]"
