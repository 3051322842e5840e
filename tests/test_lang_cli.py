"""The `linarch` command: exit codes, JSON for programs, one clear line (never a traceback) for a
file it cannot read, and `fmt --check` / `fmt -i`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from linarch.cli import main
from linarch.dsl.diagnostics import CODES
from linarch_testing.lang import BASE, mixer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.lin"))
BROKEN = mixer(("beta = sigmoid(b_proj(x))", "beta = sigmod(b_proj(x))"),
               ("v = v_proj(x) as [H, d]", "v = v_proj(x) as [H, dd]"))
WARNING = mixer(("beta = sigmoid(b_proj(x))", "beta = 3 * sigmoid(b_proj(x))"))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_examples_check_clean(capsys) -> None:
    status, out, err = _run(capsys, "check", *map(str, EXAMPLES))
    assert status == 0 and err == ""
    assert out.count(": ok\n") == len(EXAMPLES) - 2  # comba and rwkv7 carry an LA504 warning
    assert out.count("warning LA504") == 2 and "error" not in out


def test_exit_codes(tmp_path, capsys) -> None:
    clean = _write(tmp_path, "clean.lin", BASE)
    broken = _write(tmp_path, "broken.lin", BROKEN)
    warned = _write(tmp_path, "warned.lin", WARNING)
    assert _run(capsys, "check", clean)[0] == 0
    assert _run(capsys, "check", warned)[0] == 0  # warnings alone do not fail a check
    assert _run(capsys, "check", broken)[0] == 1
    assert _run(capsys, "check", clean, broken, warned)[0] == 1
    status, out, _ = _run(capsys, "check", broken)
    assert "error LA106: unknown function `sigmod`" in out and "error LA101: `dd`" in out


def test_json_output_carries_code_position_and_hint(tmp_path, capsys) -> None:
    broken = _write(tmp_path, "broken.lin", BROKEN)
    warned = _write(tmp_path, "warned.lin", WARNING)
    status, out, _ = _run(capsys, "check", "--format", "json", broken, warned)
    assert status == 1
    items = json.loads(out)
    assert [(i["code"], i["line"], i["col"]) for i in items] == [
        ("LA101", 13, 26), ("LA106", 14, 12), ("LA502", 14, 12)]
    for item in items:
        assert set(item) == {"code", "severity", "title", "message", "file", "line", "col",
                             "end_line", "end_col", "hint", "excerpt"}
        assert item["severity"] == CODES[item["code"]].severity.value
        assert item["title"] == CODES[item["code"]].title
        assert item["hint"] and item["excerpt"]
    assert items[0]["file"] == broken and items[-1]["file"] == warned
    assert items[1]["hint"] == "did you mean `sigmoid`?"
    assert items[0]["end_col"] == items[0]["col"] + 2  # `dd`


def test_json_output_of_a_clean_file_is_an_empty_list(tmp_path, capsys) -> None:
    status, out, _ = _run(capsys, "check", "--format", "json", _write(tmp_path, "ok.lin", BASE))
    assert status == 0 and json.loads(out) == []


@pytest.mark.parametrize("kind", ["missing", "directory", "binary"])
def test_an_unreadable_file_gives_one_clear_line(tmp_path, capsys, kind: str) -> None:
    if kind == "missing":
        path = str(tmp_path / "nope.lin")
    elif kind == "directory":
        path = str(tmp_path)
    else:
        path = str(tmp_path / "binary.lin")
        Path(path).write_bytes(b"\xff\xfe\x00mixer\x81")
    for command in (["check", path], ["show", path], ["fmt", path], ["fmt", "--check", path]):
        status, out, err = _run(capsys, *command)
        assert status in (1, 2), command
        assert "Traceback" not in err + out
        assert len(err.strip().splitlines()) == 1, err
        assert path in err or "error" in err


def test_the_installed_command_never_shows_a_traceback(tmp_path) -> None:
    junk = tmp_path / "junk.lin"
    junk.write_text("mixer (((( ]] \u2603 = = state state\n\treturn ->", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "linarch.cli", "check", str(junk),
                           str(tmp_path / "missing.lin")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "error LA" in proc.stdout and "cannot read the file" in proc.stderr


def test_fmt_check_and_in_place(tmp_path, capsys) -> None:
    messy = _write(tmp_path, "messy.lin", BASE.replace("q = l2norm(q_proj(x) as [H, d])",
                                                       "q=l2norm( q_proj(x)as[H,d] )"))
    status, out, _ = _run(capsys, "fmt", "--check", messy)
    assert status == 1 and out == f"{messy}: would reformat\n"
    status, out, _ = _run(capsys, "fmt", messy)
    assert status == 0 and out == BASE  # printed, the file untouched
    assert "q=l2norm" in Path(messy).read_text(encoding="utf-8")
    assert _run(capsys, "fmt", "-i", messy)[0] == 0
    assert Path(messy).read_text(encoding="utf-8") == BASE
    assert _run(capsys, "fmt", "--check", messy) == (0, "", "")


def test_fmt_refuses_a_file_with_syntax_errors(tmp_path, capsys) -> None:
    path = _write(tmp_path, "bad.lin", BASE.replace("beta = sigmoid(b_proj(x))", "beta = = 1"))
    status, out, err = _run(capsys, "fmt", path)
    assert status == 1 and out == ""
    assert "error LA001" in err


def test_show(tmp_path, capsys) -> None:
    status, out, _ = _run(capsys, "show", str(ROOT / "examples" / "kda.lin"))
    assert status == 0
    assert out.startswith("KimiDeltaAttention: 1 state, linear in T\n")
    assert "    class       delta (diagonal gate)\n" in out
    status, out, _ = _run(capsys, "show", _write(tmp_path, "bad.lin", BROKEN))
    assert status == 1 and "error LA106" in out
    status, out, _ = _run(capsys, "show", "--chunk-size", "16", str(ROOT / "examples" / "kda.lin"))
    assert "C = 16" in out
