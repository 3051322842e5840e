"""Golden diagnostics: every error code, shown on a small program, with its exact rendered text.

Each ``tests/golden/diagnostics/<CODE>_<what>.lin`` is checked with ``linarch check <file>`` (run
in-process from that folder, so file names are relative) and the output must equal the
``.expected`` file beside it, byte for byte: code, position, message, caret excerpt and hint.
Regenerate after an intended change with
``LINARCH_UPDATE_GOLDEN=1 pytest tests/test_lang_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from linarch.cli import main
from linarch.dsl.diagnostics import CODES, Severity

GOLDEN = Path(__file__).parent / "golden" / "diagnostics"
CASES = sorted(GOLDEN.glob("*.lin"))
UPDATE = os.environ.get("LINARCH_UPDATE_GOLDEN") == "1"


def _run_check(path: Path, capsys, monkeypatch) -> tuple[int, str]:
    monkeypatch.chdir(path.parent)
    capsys.readouterr()
    status = main(["check", path.name])
    out = capsys.readouterr()
    assert out.err == "", f"check wrote to stderr: {out.err}"
    return status, out.out


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_diagnostics_match_golden(path: Path, capsys, monkeypatch) -> None:
    status, text = _run_check(path, capsys, monkeypatch)
    expected_file = path.with_suffix(".expected")
    if UPDATE:
        expected_file.write_text(text, encoding="utf-8")
    assert expected_file.exists(), f"no {expected_file.name}: run with LINARCH_UPDATE_GOLDEN=1"
    assert text == expected_file.read_text(encoding="utf-8")
    code = path.stem.split("_")[0]
    assert f" {code}: " in text, f"{path.name} does not show {code}"
    errors = [c for c in CODES if f" error {c}: " in text]
    assert status == (1 if errors else 0)


def test_every_code_has_a_golden_file() -> None:
    covered = {p.stem.split("_")[0] for p in CASES}
    assert covered >= set(CODES), f"codes without a golden file: {sorted(set(CODES) - covered)}"
    assert covered <= set(CODES), f"golden files for unknown codes: {sorted(covered - set(CODES))}"


def test_every_golden_file_has_an_expected_file() -> None:
    expected = {p.stem for p in GOLDEN.glob("*.expected")}
    assert expected == {p.stem for p in CASES}


def test_golden_files_are_small() -> None:
    """Golden programs are minimal reproducers, not whole layers."""
    for path in CASES:
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 25, path.name


@pytest.mark.parametrize("code", sorted(CODES))
def test_severity_in_text_matches_registry(code: str) -> None:
    """The text output spells each code with its registered severity."""
    severity = CODES[code].severity.value
    texts = [p.with_suffix(".expected").read_text(encoding="utf-8") for p in CASES
             if p.stem.startswith(code + "_")]
    assert any(f" {severity} {code}: " in t for t in texts)
    assert CODES[code].severity in (Severity.ERROR, Severity.WARNING)
