"""The causality pass: what each value at token t may depend on (static < pointwise < window(w) <
prefix), and every way to read a later token or another example rejected at the node doing it."""

from __future__ import annotations

import pytest

from linarch.dsl.passes.causality import Dep, Reach
from linarch_testing.lang import analysis, codes, diagnostics, mixer, only, spanned

CONV = ("        o_proj : linear(H * d -> hidden_size)",
        "        o_proj : linear(H * d -> hidden_size)\n"
        "        conv4 : causal_conv(H * d, width = 4)\n"
        "        conv3 : causal_conv(H * d, width = 3)")


def _deps(text: str) -> dict[str, Dep]:
    unit = analysis(text).unit
    return {n.name: unit.time[i] for i, n in unit.module.nodes() if n.name}


def _value_v(expr: str) -> str:
    return mixer(CONV, ("v = v_proj(x) as [H, d]", f"v = {expr} as [H, d]"))


@pytest.mark.parametrize(("expr", "window"), [
    ("v_proj(x)", None),
    ("conv4(v_proj(x))", 4),
    ("token_shift(v_proj(x))", 2),
    ("token_shift(conv4(v_proj(x)))", 5),  # a window composes: 4 tokens, then one more
    ("conv4(token_shift(v_proj(x)))", 5),
    ("conv3(conv4(v_proj(x)))", 6),
    ("token_shift(token_shift(v_proj(x)))", 3),
    ("conv4(v_proj(x)) + token_shift(v_proj(x))", 4),  # a sum reads the wider window
])
def test_windows_compose(expr: str, window: int | None) -> None:
    dep = _deps(_value_v(expr))["v"]
    if window is None:
        assert dep.reach is Reach.POINTWISE
    else:
        assert (dep.reach, dep.window) == (Reach.WINDOW, window)


def test_static_pointwise_and_prefix_values() -> None:
    deps = _deps(_value_v("conv4(v_proj(x))"))
    assert deps["H"].reach is Reach.STATIC and deps["d"].reach is Reach.STATIC
    assert deps["x"].reach is Reach.POINTWISE and deps["beta"].reach is Reach.POINTWISE
    assert deps["S"].reach is Reach.PREFIX and deps["o"].reach is Reach.PREFIX


def test_running_sums_and_causal_global_operations_are_prefixes() -> None:
    text = mixer(("    H = num_heads", "    complexity quadratic\n    H = num_heads"),
                 ("    o = S @ q", "    c = cumsum(v, over = time)\n"
                                 "    a = attention(q, k, v)\n    o = S @ q + a + c"))
    deps = _deps(text)
    assert deps["c"].reach is Reach.PREFIX and deps["a"].reach is Reach.PREFIX


# each way to leak the future, the code, and the source text the diagnostic points at
LEAKS = [
    ("LA201", ("beta = sigmoid(b_proj(x))", "beta = sigmoid(mean(b_proj(x), over = time))"),
     "mean(b_proj(x), over = time)"),
    ("LA201", ("beta = sigmoid(b_proj(x))",
               "beta = sigmoid(b_proj(x) - sum(b_proj(x), over = time))"),
     "sum(b_proj(x), over = time)"),
    ("LA201", ("beta = sigmoid(b_proj(x))", "beta = sigmoid(softmax(b_proj(x), over = time))"),
     "softmax(b_proj(x), over = time)"),
    ("LA201", ("    o = S @ q", "    o = S @ q / T"), "S @ q / T"),  # the length counts the future
    ("LA202", ("beta = sigmoid(b_proj(x))",
               "beta = sigmoid(reverse_cumsum(b_proj(x), over = time))"),
     "reverse_cumsum(b_proj(x), over = time)"),
    ("LA204", ("v = v_proj(x) as [H, d]", "v = fft_conv(v_proj(x), k_proj(x)) as [H, d]"),
     "fft_conv(v_proj(x), k_proj(x))"),
    ("LA205", ("    o = S @ q", "    o = S @ q + attention(q, k, v, causal = false)"),
     "attention(q, k, v, causal = false)"),
    ("LA206", ("beta = sigmoid(b_proj(x))", "beta = sigmoid(softmax(b_proj(x), over = batch))"),
     "softmax(b_proj(x), over = batch)"),
]


@pytest.mark.parametrize(("code", "change", "span"), LEAKS, ids=[c + ": " + s for c, _, s in LEAKS])
def test_each_leak_is_rejected_at_its_node(code: str, change: tuple[str, str], span: str) -> None:
    text = mixer(("    H = num_heads", "    complexity quadratic\n    H = num_heads"), change)
    found = [d for d in diagnostics(text) if d.code.startswith("LA2")]
    assert [d.code for d in found] == [code]
    assert spanned(text, found[0]) == span
    assert found[0].hint


@pytest.mark.parametrize("padding", ["same", "center", "right", "valid"])
def test_a_convolution_padded_on_the_right_is_rejected(padding: str) -> None:
    text = mixer(CONV, ("conv3 : causal_conv(H * d, width = 3)",
                        f"conv3 : causal_conv(H * d, width = 3, padding = \"{padding}\")"),
                 ("v = v_proj(x) as [H, d]", "v = conv3(conv4(v_proj(x))) as [H, d]"))
    d = only(text, "LA203")
    assert spanned(text, d) == "conv3(conv4(v_proj(x)))"
    assert f'padded "{padding}"' in d.message


def test_causal_forms_are_accepted() -> None:
    """cumsum, causal attention (declared quadratic), causal fft_conv (declared loglinear)."""
    assert codes(mixer(("    o = S @ q", "    o = S @ q + cumsum(v, over = time)"))) == []
    assert codes(mixer(("    H = num_heads", "    complexity quadratic\n    H = num_heads"),
                       ("    o = S @ q", "    o = S @ q + attention(q, k, v)"))) == []
    assert codes(mixer(("    H = num_heads", "    complexity loglinear\n    H = num_heads"),
                       ("v = v_proj(x) as [H, d]",
                        "v = fft_conv(v_proj(x), k_proj(x), causal = true) as [H, d]"))) == []


def test_the_length_in_a_shape_is_not_a_leak() -> None:
    """T as the size of a state (a growing state in a declared quadratic mixer) is legal; as a
    number it is not (see LEAKS), nor as the size of anything else."""
    text = mixer(("    H = num_heads", "    complexity quadratic\n    H = num_heads"),
                 ("    o = S @ q", "    state Z : [H, d, T]\n    Z = 0.5 * Z + sum(v)\n"
                                 "    o = S @ q"))
    assert codes(text) == []


@pytest.mark.parametrize(("change", "what"), [
    (("    o = S @ q", "    o = S @ q * sum(arange(T))"), "gives a T-long vector"),
    (("q = l2norm(q_proj(x) as [H, d])", "q = rotary(l2norm(q_proj(x) as [H, d]), base = T)"),
     "sets the rotary base"),
    (("        o_proj : linear(H * d -> hidden_size)",
      "        o_proj : linear(H * d -> hidden_size)\n        pos : weight(T)"),
     "sizes a parameter"),
    (("    o = S @ q", "    o = S @ q * sum(slice(arange(T), 0, 2))"), "gives a T-long vector"),
])
def test_anything_the_length_sizes_or_configures_is_a_leak(change, what) -> None:
    """arange(T), rotary(base = T), weight(T) and slices of T-sized values read the length of
    the sequence (decoding a token at a time would see another T): LA201 where T is used."""
    found = [d for d in diagnostics(mixer(change)) if d.code == "LA201"]
    assert found and what in found[0].message
