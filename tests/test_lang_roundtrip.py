"""Printing and identity: IR -> text -> IR is the identity, `linarch fmt` is a fixpoint that keeps
every comment, and the structural hash sees computations, not names or layout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from linarch.api import format_source
from linarch.dsl.diagnostics import Reporter
from linarch.dsl.hashing import structural_hash, wl_hash
from linarch.dsl.ir import graphs_equal, verify
from linarch.dsl.lower import lower
from linarch.dsl.parser import parse
from linarch.dsl.pipeline import PASSES, analyse
from linarch.dsl.source import Source
from linarch.dsl.unit import Options, Unit
from linarch.dsl.unparse import to_text

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = sorted(p.stem for p in EXAMPLES.glob("*.lin"))


def _text(name: str) -> str:
    return (EXAMPLES / f"{name}.lin").read_text(encoding="utf-8")


def _module(text: str):
    result = analyse(Source(text))
    assert result.ok, [d.render() for d in result.errors]
    return result.module


def _hash(text: str) -> str:
    return structural_hash(_module(text))


def _replace(text: str, *pairs: tuple[str, str]) -> str:
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new)
    return text


def _rename(text: str, mapping: dict[str, str]) -> str:
    """Rename whole identifiers (not inside longer names or after a dot)."""
    for old, new in mapping.items():
        text = re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w])", new, text)
    return text


# ------------------------------------------------------------------ IR -> text -> IR


@pytest.mark.parametrize("name", NAMES)
def test_printed_ir_parses_back_to_an_equal_graph(name: str) -> None:
    module = _module(_text(name))
    text = to_text(module)
    again = _module(text)
    assert graphs_equal(module, again)
    assert to_text(again) == text  # printing is a fixpoint
    assert format_source(Source(text)) == text  # and already canonical


@pytest.mark.parametrize("name", NAMES)
def test_ir_verifies_after_lowering_and_after_every_pass(name: str) -> None:
    source = Source(_text(name))
    report = Reporter(source)
    unit = Unit(lower(parse(source, report), source, report), Options())
    assert verify(unit.module) == []
    for pass_name, run, _needs_clean in PASSES:
        unit = run(unit, report)
        assert verify(unit.module) == [], pass_name
    assert not report.has_errors


def test_graphs_equal_detects_a_changed_node() -> None:
    a = _module(_text("deltanet"))
    tanh = ("beta = sigmoid(b_proj(x))", "beta = tanh(b_proj(x))")
    b = _module(_replace(_text("deltanet"), tanh))
    assert not graphs_equal(a, b)
    assert graphs_equal(a, _module(_text("deltanet")))


# ------------------------------------------------------------------ fmt


# every shipped program, the long formulas of the gallery's (examples/asi_arch) included
PROGRAMS = sorted(EXAMPLES.glob("**/*.lin"))


@pytest.mark.parametrize("path", PROGRAMS, ids=[str(p.relative_to(EXAMPLES)) for p in PROGRAMS])
def test_fmt_is_idempotent_keeps_comments_and_meaning(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    once = format_source(Source(text))
    assert format_source(Source(once)) == once
    comments = [m.group(1).strip() for m in re.finditer(r"#(.*)", text)]
    assert [m.group(1).strip() for m in re.finditer(r"#(.*)", once)] == comments
    assert graphs_equal(_module(text), _module(once))
    assert max(len(line) for line in once.splitlines()) <= 100
    assert once == text  # shipped canonical: `linarch fmt --check` passes on every example


def test_fmt_breaks_a_long_statement_inside_its_brackets() -> None:
    """A statement continues only inside brackets: a long call breaks after a comma, aligned
    after its bracket; a long sum at the top level of a binding is put in parentheses to break
    before a + (never inside a [H, 4, 1])."""
    terms = " + ".join(f"clamp(path - {i}, 0, 1) * norm_eps" for i in range(6))
    text = _replace(_text("deltanet"), (
        "    beta = sigmoid(b_proj(x))",
        "    beta = sigmoid(b_proj(x))\n"
        "    path = arange(4)\n"
        f"    long_sum = {terms}\n"
        "    stats = concat(mean(v) as [H, 1], mean(square(v)) as [H, 1], mean(abs(v)) as [H, 1],"
        " sqrt(dv * mean(square(v))) as [H, 1])"))
    once = format_source(Source(text))
    assert format_source(Source(once)) == once
    assert graphs_equal(_module(text), _module(once))
    assert max(len(line) for line in once.splitlines()) <= 100
    assert "    long_sum = (clamp(path - 0, 0, 1) * norm_eps" in once
    assert "\n                + clamp(" in once  # aligned after the added parenthesis
    assert ("    stats = concat(mean(v) as [H, 1], mean(square(v)) as [H, 1], mean(abs(v)) as "
            "[H, 1],\n                   sqrt(") in once


def test_fmt_fills_header_lines_to_the_width_before_breaking_a_formula() -> None:
    """A header line that ends in a comma may use all 100 columns: only the last one keeps room
    for its "):". A full line is never broken inside a formula like log(exp(0.7) - 1)."""
    src = Path(__file__).resolve().parent.parent / "benchmarks" / "sanity" / "gfr_nostats.lin"
    once = format_source(Source(src.read_text(encoding="utf-8")))
    assert "gate_logit_init = log(exp(0.7) - 1),\n" in once
    assert max(len(line) for line in once.splitlines()) == 100
    assert format_source(Source(once)) == once


def test_fmt_keeps_comments_inside_bracketed_statements() -> None:
    text = _replace(_text("deltanet"), (
        "    beta = sigmoid(b_proj(x))  # rate in [0, 1], per head",
        "    beta = sigmoid(  # inner note\n        b_proj(x))  # rate in [0, 1], per head"))
    once = format_source(Source(text))
    assert "    # inner note\n    beta = sigmoid(b_proj(x))  # rate in [0, 1], per head\n" in once
    assert format_source(Source(once)) == once


def test_fmt_canonical_spacing_and_parentheses() -> None:
    text = _replace(_text("deltanet"),
                    ("o = S @ q * dk ** -0.5", "o=((S@q))*dk**-0.5"),
                    ("    v = silu(v_conv1d(v_proj(x))) as [H, dv]",
                     "    v = silu( v_conv1d( v_proj(x) ) )as[H,dv]"))
    assert format_source(Source(text)) == format_source(Source(_text("deltanet")))


# ------------------------------------------------------------------ structural hash

DELTANET_RENAMED = {
    "q": "query", "k": "key", "v": "value", "beta": "rate", "o": "out", "S": "M", "H": "heads",
    "dk": "key_dim", "dv": "value_dim", "q_proj": "wq", "k_proj": "wk", "v_proj": "wv",
    "b_proj": "wb", "q_conv1d": "cq", "k_conv1d": "ck", "v_conv1d": "cv", "o_norm": "onorm",
    "o_proj": "wo",
}


@pytest.mark.filterwarnings("ignore:The hashes produced for directed graphs changed")
def test_hash_ignores_binding_and_parameter_names() -> None:
    text = _text("deltanet")
    renamed = _rename(text, DELTANET_RENAMED)
    assert "query = l2norm" in renamed and "M = M @" in renamed
    assert _hash(renamed) == _hash(text)
    assert wl_hash(_module(renamed)) == wl_hash(_module(text))


def test_hash_ignores_formatting_comments_and_aliases() -> None:
    text = _text("deltanet")
    reformatted = format_source(Source(text))
    commented = text.replace("    state S", "    # the memory\n    state S")
    squashed = _replace(text, ("o = S @ q * dk ** -0.5", "o=((S@q))*dk**-0.5"))
    aliased = _replace(text, ("    o = S @ q * dk ** -0.5",
                              "    read = S @ q\n    o = read * dk ** -0.5"))
    expected = _hash(text)
    assert {_hash(t) for t in (reformatted, commented, squashed, aliased)} == {expected}


def test_hash_ignores_the_order_of_independent_statements() -> None:
    text = _text("deltanet")
    q_line = "    q = l2norm(silu(q_conv1d(q_proj(x))) as [H, dk])  # unit vectors\n"
    k_line = "    k = l2norm(silu(k_conv1d(k_proj(x))) as [H, dk])\n"
    swapped = _replace(text, (q_line + k_line, k_line + q_line))
    params = ("        q_proj, k_proj : linear(hidden_size -> H * dk)\n"
              "        v_proj : linear(hidden_size -> H * dv)\n")
    reordered = _replace(swapped, (params,
                                   "        v_proj : linear(hidden_size -> H * dv)\n"
                                   "        k_proj, q_proj : linear(hidden_size -> H * dk)\n"))
    assert not graphs_equal(_module(text), _module(swapped))  # node ids differ ...
    assert _hash(swapped) == _hash(text) == _hash(reordered)  # ... the computation does not


@pytest.mark.parametrize("change", [
    ("beta = sigmoid(b_proj(x))", "beta = tanh(b_proj(x))"),
    ("q_conv1d, k_conv1d : causal_conv(H * dk, width = conv_size, bias = conv_bias)",
     "q_conv1d, k_conv1d : causal_conv(H * dk, width = 3, bias = conv_bias)"),
    ("conv_size = 4", "conv_size = 3"),
    ("S = S @ (I - beta * outer(k, k)) + beta * outer(v, k)",
     "S = S @ (I - beta * outer(k, k)) + outer(v, k)"),
    ("o = S @ q * dk ** -0.5", "o = S @ q"),
    ("return o_proj(o_norm(o) as [H * dv])", "return o_proj(o as [H * dv])"),
    ("b_proj : linear(hidden_size -> H)",
     "b_proj : linear(hidden_size -> H, bias = true, bias_init = \"constant\", bias_value = 1.0)"),
], ids=["sigmoid->tanh", "conv width", "conv_size default", "write rate", "scale", "no norm",
        "bias init"])
def test_hash_changes_when_the_computation_changes(change: tuple[str, str]) -> None:
    text = _text("deltanet")
    assert _hash(_replace(text, change)) != _hash(text)


def test_hashes_of_the_examples_are_distinct() -> None:
    hashes = {_hash(_text(name)) for name in NAMES}
    assert len(hashes) == len(NAMES)
