"""No input of any kind makes the front end raise: random text, token soup, and the examples with
lines deleted, duplicated, swapped, truncated and characters inserted go through `linarch.check`,
`show`, `fmt` and the CLI; every diagnostic carries a registered code and a span inside the file.

Hypothesis runs derandomized (a fixed seed per test), so CI sees the same inputs every run; the
example counts in BUDGET add up to more than 10,000 inputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linarch.api import format_source, show
from linarch.cli import main
from linarch.dsl.builtins import BUILTINS
from linarch.dsl.diagnostics import CODES, LinarchError, sort_key
from linarch.dsl.ir import graphs_equal, verify
from linarch.dsl.params import PARAM_KINDS
from linarch.dsl.pipeline import analyse
from linarch.dsl.source import Source
from linarch.dsl.unparse import to_text

EXAMPLES = [p.read_text(encoding="utf-8")
            for p in sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.lin"))]

BUDGET = {  # hypothesis max_examples per test; the total is the fuzz size
    "unicode": 3000, "printable": 2000, "tokens": 2600, "tokens_in_mixer": 1000,
    "mutants": 1250, "mutants_show_fmt": 150, "mutants_cli": 100,
}


def _settings(name: str):
    return settings(max_examples=BUDGET[name], derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


TOKENS = (["(", ")", "[", "]", ",", ":", "=", "->", "+", "-", "*", "/", "@", "**", "#", '"s"',
           "mixer", "params", "state", "return", "loss", "complexity", "as", "true", "false",
           "x", "I", "T", "time", "batch", "S", "q", "k", "v", "beta", "g", "H", "d",
           "hidden_size", "num_heads", "0", "1", "2", "-1", "0.5", "1e-5", "1e999", "linear",
           "quadratic", "over", "causal", "width", "bias", "padding", '"same"']
          + list(BUILTINS) + list(PARAM_KINDS))
SEPARATORS = st.sampled_from([" ", " ", "", "\n", "\n    ", "\n        ", "\t"])
HEADER = "mixer M(hidden_size = 64, num_heads = 2):\n    H = num_heads\n    d = hidden_size / H\n"


def check_invariants(text: str) -> None:
    """The front end's contract on any text: no exception, registered codes, spans in the file,
    renderable diagnostics, and a clean result that survives printing."""
    result = analyse(Source(text, "fuzz.lin"))
    lines = text.split("\n")
    for d in result.diagnostics:
        assert d.code in CODES
        assert d.span is not None, d.render()
        assert 0 <= d.span.start <= d.span.end <= len(text), d.render()
        assert 1 <= d.span.line <= len(lines) and d.span.col >= 1
        assert d.render().startswith("fuzz.lin:")
        json.dumps(d.to_dict())
    assert list(result.diagnostics) == sorted(result.diagnostics, key=sort_key)
    if result.module is not None:
        assert verify(result.module) == []
    if result.ok:
        again = analyse(Source(to_text(result.module)))
        assert again.ok and graphs_equal(result.module, again.module)


def check_show_and_fmt(text: str) -> None:
    source = Source(text, "fuzz.lin")
    assert isinstance(show(source), str)
    try:
        formatted = format_source(source)
    except LinarchError as exc:
        assert exc.diagnostics and all(d.code in CODES for d in exc.diagnostics)
        return
    assert format_source(Source(formatted)) == formatted
    before = [d.code for d in analyse(source).diagnostics]
    assert [d.code for d in analyse(Source(formatted)).diagnostics] == before


# ------------------------------------------------------------------ random text


@_settings("unicode")
@given(st.text(max_size=200))
def test_random_unicode(text: str) -> None:
    check_invariants(text)


@_settings("printable")
@given(st.text(st.characters(min_codepoint=9, max_codepoint=126), max_size=300))
def test_random_printable_ascii(text: str) -> None:
    check_invariants(text)


@_settings("tokens")
@given(st.lists(st.tuples(st.sampled_from(TOKENS), SEPARATORS), max_size=60))
def test_token_soup(parts: list[tuple[str, str]]) -> None:
    check_invariants("".join(t + s for t, s in parts))


@_settings("tokens_in_mixer")
@given(st.lists(st.lists(st.sampled_from(TOKENS), max_size=12), max_size=8))
def test_token_soup_inside_a_mixer(statements: list[list[str]]) -> None:
    check_invariants(HEADER + "".join("    " + " ".join(s) + "\n" for s in statements))


# ------------------------------------------------------------------ mutated examples

MUTATION = st.one_of(
    st.tuples(st.just("delete"), st.floats(0, 1)),
    st.tuples(st.just("duplicate"), st.floats(0, 1)),
    st.tuples(st.just("swap"), st.floats(0, 1), st.floats(0, 1)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.characters(max_codepoint=0x2FFF)),
    st.tuples(st.just("token"), st.floats(0, 1), st.sampled_from(TOKENS)),
    st.tuples(st.just("cut"), st.floats(0, 1), st.integers(1, 30)),
)


def mutate(text: str, mutations: list[tuple]) -> str:
    for kind, at, *rest in mutations:
        lines = text.split("\n")
        i = min(int(at * len(lines)), len(lines) - 1)
        pos = int(at * len(text))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = min(int(rest[0] * len(lines)), len(lines) - 1)
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "truncate":
            return text[:pos]
        elif kind in ("insert", "token"):
            text = text[:pos] + rest[0] + text[pos:]
            continue
        else:
            text = text[:pos] + text[pos + rest[0]:]
            continue
        text = "\n".join(lines)
    return text


MUTANTS = st.builds(mutate, st.sampled_from(EXAMPLES), st.lists(MUTATION, min_size=1, max_size=4))


@_settings("mutants")
@given(MUTANTS)
def test_mutated_examples(text: str) -> None:
    check_invariants(text)


@_settings("mutants_show_fmt")
@given(MUTANTS)
def test_show_and_fmt_on_mutated_examples(text: str) -> None:
    check_show_and_fmt(text)


@_settings("mutants_cli")
@given(MUTANTS, st.sampled_from([[], ["--format", "json"]]))
def test_cli_on_mutated_examples(text: str, options: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutant.lin"
        path.write_text(text, encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(["check", *options, str(path)])
    assert status in (0, 1), err.getvalue()
    assert err.getvalue() == ""
    if options:
        assert all(item["code"] in CODES for item in json.loads(out.getvalue()))


def test_the_fuzz_budget_is_at_least_ten_thousand_inputs() -> None:
    assert sum(BUDGET.values()) >= 10_000


def test_mutations_do_what_they_say() -> None:
    text = "a\nb\nc"
    assert mutate(text, [("delete", 0.5)]) == "a\nc"
    assert mutate(text, [("duplicate", 0.0)]) == "a\na\nb\nc"
    assert mutate(text, [("swap", 0.0, 0.9)]) == "c\nb\na"
    assert mutate(text, [("truncate", 0.5)]) == "a\n"
    assert mutate(text, [("insert", 0.0, "x")]) == "xa\nb\nc"
    assert mutate(text, [("cut", 0.0, 2)]) == "b\nc"
