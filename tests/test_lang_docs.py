"""docs/language.md cannot drift from the code: its error-code table is generated from CODES, it
names every builtin, parameter kind and transition class, and its complete programs check clean.

Regenerate the table with ``LINARCH_UPDATE_GOLDEN=1 pytest tests/test_lang_docs.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from linarch.dsl.builtins import BUILTINS
from linarch.dsl.diagnostics import CODES
from linarch.dsl.params import PARAM_KINDS
from linarch.dsl.passes.transitions import ALGORITHMS, TClass
from linarch_testing.lang import diagnostics

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "language.md"
GOLDEN = ROOT / "tests" / "golden" / "diagnostics"
BEGIN, END = "<!-- codes:begin -->\n", "<!-- codes:end -->\n"
STAGES = {"0": "syntax", "1": "names, types, shapes", "2": "causality", "3": "transitions",
          "4": "complexity", "5": "stability"}


def codes_table() -> str:
    rows = ["| code | severity | stage | meaning | golden examples |", "|---|---|---|---|---|"]
    for code, info in CODES.items():
        files = sorted(GOLDEN.glob(f"{code}_*.lin"))
        examples = ", ".join(f"`{p.stem[len(code) + 1:]}`" for p in files)
        rows.append(f"| {code} | {info.severity.value} | {STAGES[code[2]]} | {info.title} | "
                    f"{examples} |")
    return "\n".join(rows) + "\n"


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_the_code_table_is_generated_from_codes() -> None:
    text = _doc()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    expected = head + BEGIN + codes_table() + END + tail
    if os.environ.get("LINARCH_UPDATE_GOLDEN") == "1":
        DOC.write_text(expected, encoding="utf-8")
    assert text == expected, "run with LINARCH_UPDATE_GOLDEN=1 to regenerate the table"


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_is_documented(code: str) -> None:
    assert f"| {code} |" in _doc()


def test_every_builtin_parameter_kind_and_class_is_documented() -> None:
    text = _doc()
    missing = [b for b in BUILTINS if f"`{b}(" not in text]
    assert not missing, f"builtins missing from docs/language.md: {missing}"
    missing = [k for k in PARAM_KINDS if f"| `{k}` |" not in text]
    assert not missing, f"parameter kinds missing from the table: {missing}"
    for cls in TClass:
        name = "n householders" if cls is TClass.HOUSEHOLDER else cls.value
        assert f"| {name}" in text, cls
        assert ALGORITHMS[cls].split(" (")[0] in text, ALGORITHMS[cls]
    for reserved in ("`x`", "`I`", "`T`", "`time`, `batch`"):
        assert f"| {reserved} |" in text


# every ```lin block is a complete program (fragments are ```text)
PROGRAMS = re.findall(r"```lin\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_docs_hold_complete_programs() -> None:
    assert len(PROGRAMS) >= 4
    assert all(p.startswith("mixer ") for p in PROGRAMS)


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.split("(")[0] for p in PROGRAMS])
def test_complete_programs_in_the_docs_check_clean(program: str) -> None:
    assert [d.render() for d in diagnostics(program)] == []
