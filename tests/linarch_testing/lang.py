"""Small programs for the language tests: one minimal delta-rule mixer and ways to vary it.

``mixer(...)`` returns the program text with some lines replaced, so that each test states only
what it changes; ``codes`` and ``analysis`` run the front end on it.
"""

from __future__ import annotations

from linarch.api import check
from linarch.dsl.diagnostics import Diagnostic
from linarch.dsl.pipeline import Result, analyse
from linarch.dsl.source import Source
from linarch.dsl.unit import Options

# A DeltaNet without convolutions: q, k unit vectors, beta in [0, 1], one [H, d, d] state.
BASE = """\
mixer M(hidden_size = 64, num_heads = 2):
    H = num_heads
    d = hidden_size / H

    params:
        q_proj, k_proj, v_proj : linear(hidden_size -> H * d)
        b_proj, a_proj : linear(hidden_size -> H)
        g_proj : linear(hidden_size -> H * d)
        o_proj : linear(H * d -> hidden_size)

    q = l2norm(q_proj(x) as [H, d])
    k = l2norm(k_proj(x) as [H, d])
    v = v_proj(x) as [H, d]
    beta = sigmoid(b_proj(x))
    g = logsigmoid(a_proj(x))
    gk = logsigmoid(g_proj(x) as [H, d])

    state S : [H, d, d]
    S = S @ (I - beta * outer(k, k)) + beta * outer(v, k)
    o = S @ q
    return o_proj(o as [H * d])
"""

UPDATE = "    S = S @ (I - beta * outer(k, k)) + beta * outer(v, k)\n"
RETURN = "    return o_proj(o as [H * d])\n"


def mixer(*changes: tuple[str, str], text: str = BASE) -> str:
    """BASE with each (old, new) applied once; ``old`` must occur exactly once."""
    for old, new in changes:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def with_update(update: str, *changes: tuple[str, str]) -> str:
    """BASE with the state update replaced (one or more lines, without indentation)."""
    lines = "".join(f"    {line}\n" for line in update.strip().split("\n"))
    return mixer((UPDATE, lines), *changes)


def diagnostics(text: str, chunk_size: int = 64) -> list[Diagnostic]:
    return check(Source(text, "test.lin"), chunk_size=chunk_size)


def codes(text: str, chunk_size: int = 64) -> list[str]:
    return [d.code for d in diagnostics(text, chunk_size)]


def analysis(text: str, chunk_size: int = 64) -> Result:
    result = analyse(Source(text, "test.lin"), Options(chunk_size))
    assert result.ok, "\n".join(d.render() for d in result.errors)
    return result


def only(text: str, code: str) -> Diagnostic:
    """The one diagnostic of ``text``, which must carry ``code``."""
    found = diagnostics(text)
    assert [d.code for d in found] == [code], "\n".join(d.render() for d in found)
    return found[0]


def spanned(text: str, diag: Diagnostic) -> str:
    """The source text under a diagnostic's span."""
    return text[diag.span.start:diag.span.end]
