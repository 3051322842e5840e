"""The type pass: symbolic shapes, broadcasting, parameter kinds and range refinements.

Shapes are formulas of the hyper-parameters, so a width that only matches at the defaults is
still an error, and the message names the formulas in the program's own binding names.
"""

from __future__ import annotations

import math

import pytest
import sympy as sp
import torch

import linarch
from linarch.dsl.intervals import INF, Interval
from linarch.dsl.passes.stability import max_safe_chunk
from linarch.dsl.types import Kind, broadcast
from linarch_testing.lang import BASE, analysis, codes, diagnostics, mixer, only, spanned

HEAD_DIM = (("mixer M(hidden_size = 64, num_heads = 2):",
             "mixer M(hidden_size = 64, num_heads = 2, head_dim = 16):"),
            ("    d = hidden_size / H\n", "    dk = head_dim\n    d = hidden_size / H\n"))


def _types(text: str) -> dict[str, object]:
    """Binding name -> type, for every named node of a clean program."""
    unit = analysis(text).unit
    return {n.name: unit.types[i] for i, n in unit.module.nodes() if n.name}


# ------------------------------------------------------------------ shapes


def test_projection_width_error_names_both_formulas() -> None:
    text = mixer(*HEAD_DIM, ("q_proj, k_proj, v_proj : linear(hidden_size -> H * d)",
                             "q_proj : linear(hidden_size -> dk)\n"
                             "        k_proj, v_proj : linear(hidden_size -> H * d)"),
                 ("q = l2norm(q_proj(x) as [H, d])", "q = l2norm(q_proj(x) as [H, dk])"))
    d = diagnostics(text)[0]
    assert d.code == "LA104"
    assert "a value with [dk] = dk features cannot be viewed as [H, dk] = H*dk" in d.message
    assert "(16 vs 32 at the defaults)" in d.message
    assert spanned(text, d) == "q_proj(x) as [H, dk]"
    assert "linear(hidden_size -> H * dk)" in d.hint


def test_a_width_that_matches_only_at_the_defaults_is_an_error() -> None:
    """hidden_size = H * dk at the defaults (64 = 2 * 32), but not as formulas."""
    text = mixer(("mixer M(hidden_size = 64, num_heads = 2):",
                  "mixer M(hidden_size = 64, num_heads = 2, head_dim = 32):"),
                 ("    d = hidden_size / H", "    d = head_dim"),
                 ("q_proj, k_proj, v_proj : linear(hidden_size -> H * d)",
                  "q_proj : linear(hidden_size -> hidden_size)\n"
                  "        k_proj, v_proj : linear(hidden_size -> H * d)"))
    d = only(text, "LA104")
    assert "[hidden_size] = hidden_size" in d.message and "[H, d] = H*d" in d.message
    assert "both 64 at the defaults, but not for every hyper-parameter" in d.message


def test_projection_input_width_names_expected_and_actual() -> None:
    d = only(mixer(("beta = sigmoid(b_proj(x))", "beta = sigmoid(b_proj(v))")), "LA103")
    assert d.message == "`b_proj` expects hidden_size input features but gets d ([H, d])"


def test_state_update_must_have_the_state_shape() -> None:
    text = mixer(("S = S @ (I - beta * outer(k, k)) + beta * outer(v, k)", "S = S @ q + v"))
    assert only(text, "LA103").message == "state `S` is [H, d, d] but its update is [H, d]"


def test_output_must_be_hidden_size() -> None:
    d = only(mixer(("return o_proj(o as [H * d])", "return o")), "LA111")
    assert d.message == "the output is token[H, d], not token[hidden_size]"


@pytest.mark.parametrize(("a", "b", "out"), [
    (("H",), ("H", "dk", "dk"), ("H", "dk", "dk")),  # per-head value over a state: prefix
    (("dk",), ("H", "dk"), ("H", "dk")),  # per-channel vector over heads: suffix
    ((), ("H", "dk"), ("H", "dk")),  # scalars broadcast everywhere
    (("H", "dk"), ("H", "dk"), ("H", "dk")),
    (("dk",), ("H", "dv"), None),
    (("H", "dk"), ("H", "dv", "dk", "dv"), None),
])
def test_broadcast_rule(a, b, out) -> None:
    sym = {n: sp.Symbol(n, positive=True) for n in ("H", "dk", "dv")}

    def shape(names: tuple[str, ...]) -> tuple[sp.Symbol, ...]:
        return tuple(sym[n] for n in names)

    expected = None if out is None else shape(out)
    assert broadcast(shape(a), shape(b)) == expected
    assert broadcast(shape(b), shape(a)) == expected


def test_shapes_that_do_not_broadcast_are_reported_with_the_rule() -> None:
    text = mixer(("v = v_proj(x) as [H, d]", "v = v_proj(x) as [H, d]\n    w = v + slice(q, 0, 2)"))
    d = only(text, "LA103")
    assert d.message == "cannot combine [H, d] and [H, 2] with `+`"
    assert "broadcast over trailing axes" in d.hint


def test_reshape_views_features_as_heads() -> None:
    types = _types(BASE)
    H = sp.Symbol("num_heads", positive=True, integer=True)
    hidden = sp.Symbol("hidden_size", positive=True, integer=True)
    d = hidden / H
    assert types["v"].kind is Kind.TOKEN and types["v"].shape == (H, d)
    assert types["S"].shape == (H, d, d)
    assert types["o"].shape == (H, d)


# ------------------------------------------------------------------ parameters and names


def test_weights_with_leading_ones_are_used_without_them() -> None:
    """weight(1, 1, d) is stored as fla stores token-shift mixes, and used as a [d] vector."""
    text = mixer(("        o_proj : linear(H * d -> hidden_size)",
                  "        o_proj : linear(H * d -> hidden_size)\n"
                  "        x_r : weight(1, 1, hidden_size, init = \"zeros\")"),
                 ("    q = l2norm(q_proj(x) as [H, d])",
                  "    q = l2norm(q_proj(x + x_r) as [H, d])"))
    types = _types(text)
    hidden = sp.Symbol("hidden_size", positive=True, integer=True)
    assert types["x_r"].kind is Kind.STATIC and types["x_r"].shape == (hidden,)


def test_dotted_parameter_names_follow_fla_submodules() -> None:
    text = mixer(("        b_proj, a_proj : linear(hidden_size -> H)",
                  "        b_proj.0 : linear(hidden_size -> 16)\n"
                  "        b_proj.1 : linear(16 -> H, bias = true)\n"
                  "        a_proj : linear(hidden_size -> H)"),
                 ("beta = sigmoid(b_proj(x))", "beta = sigmoid(b_proj.1(b_proj.0(x)))"))
    assert codes(text) == []
    assert _types(text)["b_proj.1"].module.widths[0] == 16


@pytest.mark.parametrize(("declaration", "code"), [
    ("linear(hidden_size, H)", "LA105"),  # widths are written in -> out
    ("linear(hidden_size -> H, bias = 1)", "LA105"),  # bias is a bool
    ("linear(hidden_size -> H, scale = 2.0)", "LA105"),  # no such keyword
    ("mlp(hidden_size -> 8 -> H, act = \"swoosh\")", "LA105"),  # unknown activation
    ("causal_conv(hidden_size -> H)", "LA105"),  # a conv has no widths chain
    ("causal_conv(H, init = \"normal\")", "LA105"),  # a weight's init, never a conv's
    ("linear(hidden_size -> H, bias_init = \"constant\")", "LA105"),  # no bias to init
    ("linear(hidden_size -> H, bias = true, bias_value = 1.0)", "LA105"),  # not read: default
    ("linear(hidden_size -> H, bias = true, bias_init = \"normal\")", "LA105"),  # a weight's
    ("linear(hidden_size -> H, bias = true, bias_end = 1.0)", "LA105"),  # read only by a ramp
    ("linear(hidden_size -> H, bias = true, bias_init = \"constant\", bias_power = 2)",
     "LA105"),
    ("linear(hidden_size -> H, bias = true, bias_init = \"ramp\", bias_power = 0)", "LA105"),
    ("weight(H, init = \"constant\", value = 1, end = 0)", "LA105"),  # end: a ramp's
    ("weight(H, init = \"ramp\", value = 1, power = -0.5)", "LA105"),  # 0 ** -0.5 at n = 0
    ("weight(H, init = \"ramp\", end = H * x)", "LA105"),  # not a static number
    ("liner(hidden_size -> H)", "LA106"),
])
def test_parameter_constructors_are_checked(declaration: str, code: str) -> None:
    text = mixer(("b_proj, a_proj : linear(hidden_size -> H)",
                  f"b_proj : {declaration}\n        a_proj : linear(hidden_size -> H)"))
    assert codes(text) == [code]


def test_a_linear_bias_starts_where_the_program_says() -> None:
    """fla sets some biases after construction (a decay's at -2.9444); `bias_init` states it,
    the layer starts there, and the backbone's init (biases to zero) leaves it alone."""
    from linarch.models.configuration import LinarchConfig
    from linarch.models.modeling import LinarchForCausalLM

    text = mixer(("b_proj, a_proj : linear(hidden_size -> H)",
                  "b_proj : linear(hidden_size -> H)\n        a_proj : linear(hidden_size -> H, "
                  "bias = true, bias_init = \"constant\", bias_value = -2 * H)"))
    assert codes(text) == []
    layer = linarch.compile(text)(hidden_size=64, num_heads=2)
    assert torch.equal(layer.a_proj.bias, torch.full((2,), -4.0))
    model = LinarchForCausalLM(LinarchConfig(vocab_size=32, hidden_size=64, num_heads=2,
                                             num_hidden_layers=1, mixer_source=text))
    assert torch.equal(model.model.layers[0].mixer.a_proj.bias, torch.full((2,), -4.0))
    assert model.model.layers[0].mixer.b_proj.bias is None
    # a bias a keyword may turn off: initialised where it exists, no error where it does not
    keyword = text.replace("bias = true, bias_init", "bias = use_bias, bias_init").replace(
        "mixer M(hidden_size = 64, num_heads = 2):",
        "mixer M(hidden_size = 64, num_heads = 2, use_bias = true):")
    assert codes(keyword) == []
    layer_cls = linarch.compile(keyword)
    assert torch.equal(layer_cls(hidden_size=64, num_heads=2).a_proj.bias, torch.full((2,), -4.0))
    assert layer_cls(hidden_size=64, num_heads=2, use_bias=False).a_proj.bias is None


def test_a_ramp_init_spreads_the_start_across_channels() -> None:
    """`init = "ramp"` (a weight) and `bias_init = "ramp"` (a linear's bias): channel n of N
    starts at value + (end - value) * (n / N) ** power, RWKV's token-shift and decay inits."""
    text = mixer(("b_proj, a_proj : linear(hidden_size -> H)",
                  "b_proj : linear(hidden_size -> H)\n"
                  "        a_proj : linear(hidden_size -> 4 * H, bias = true, "
                  "bias_init = \"ramp\", bias_value = -6, bias_end = 2)\n"
                  "        mix : weight(1, 1, hidden_size, init = \"ramp\", value = 1, end = 0, "
                  "power = 0.5)"),
                 ("beta = sigmoid(b_proj(x))", "beta = sigmoid(b_proj(x + mix))"))
    assert codes(text) == []
    layer = linarch.compile(text)(hidden_size=64, num_heads=2)
    assert torch.equal(layer.a_proj.bias, torch.arange(8.0) - 6)  # -6 + 8 * n / 8
    n = torch.arange(64, dtype=torch.float64) / 64
    assert torch.allclose(layer.mix.flatten().double(), 1 - n ** 0.5)
    from linarch.models.configuration import LinarchConfig
    from linarch.models.modeling import LinarchForCausalLM

    model = LinarchForCausalLM(LinarchConfig(vocab_size=32, hidden_size=64, num_heads=2,
                                             num_hidden_layers=1, mixer_source=text))
    mixer_layer = model.model.layers[0].mixer  # the backbone's init leaves both ramps alone
    assert torch.equal(mixer_layer.a_proj.bias, layer.a_proj.bias)
    assert torch.equal(mixer_layer.mix, layer.mix)


@pytest.mark.parametrize("name", ["x", "I", "T", "time", "batch"])
def test_reserved_names_cannot_be_bound(name: str) -> None:
    line = "    beta = sigmoid(b_proj(x))"
    text = mixer((line, f"{line}\n    {name} = beta"))
    d = only(text, "LA115")
    assert f"`{name}` is reserved" in d.message


@pytest.mark.parametrize(("first", "second", "why"), [
    ("g.w : linear(hidden_size -> H)", "g.w.bias : weight(H)", "a weight cannot live inside"),
    ("g.trunk.0 : linear(hidden_size -> H)", "g.temp : weight(1)", "a weight cannot live inside"),
    ("g.w : linear(hidden_size -> H)", "g.w.x : linear(H -> H)", "would live inside parameter"),
    ("g.w.x : linear(hidden_size -> H)", "g.w : linear(H -> H)", "would live inside parameter"),
])
def test_dotted_parameters_that_the_layer_cannot_hold_are_refused(first, second, why) -> None:
    """`a.b` is entry `b` of a container module `a`: a raw weight cannot be one, and no
    parameter lives inside another (the constructor would crash where check said ok)."""
    text = mixer(("b_proj, a_proj : linear(hidden_size -> H)",
                  f"b_proj, a_proj : linear(hidden_size -> H)\n        {first}\n        {second}"))
    d = only(text, "LA115")
    assert why in d.message


def test_one_typo_is_reported_once() -> None:
    """An undefined name used three times, and a failed definition used later: one each."""
    text = mixer(("v = v_proj(x) as [H, d]", "v = v_proj(xx) as [H, d]\n    w = xx + xx"))
    assert codes(text) == ["LA101"]
    assert codes(mixer(("beta = sigmoid(b_proj(x))", "beta = = sigmoid(b_proj(x))"))) == ["LA001"]


# ------------------------------------------------------------------ refinements


def test_a_sum_keeps_the_sign_its_terms_share() -> None:
    """sqrt(sum(square(v))), an L2 norm written out, is safe; sqrt(sum(v)) is not."""
    out = "    o = S @ q\n"
    safe = mixer((out, out + "    n = sqrt(sum(square(v)))\n    o2 = o / (n + 1)\n"),
                 ("return o_proj(o as", "return o_proj(o2 as"))
    assert codes(safe) == []
    unsafe = mixer((out, out + "    n = sqrt(sum(v))\n    o2 = o / (n + 1)\n"),
                   ("return o_proj(o as", "return o_proj(o2 as"))
    assert codes(unsafe) == ["LA117"]


def test_ranges_from_interval_analysis() -> None:
    types = _types(BASE)
    assert types["beta"].range == Interval(0.0, 1.0)  # sigmoid
    assert types["g"].range.hi <= 0 and types["g"].range.lo == -INF  # logsigmoid
    assert types["q"].unit and types["k"].unit and not types["v"].unit  # l2norm
    assert types["q"].range == Interval(-1.0, 1.0)


def test_gated_deltanet_gate_is_proven_nonpositive() -> None:
    text = mixer(("        o_proj : linear(H * d -> hidden_size)",
                  "        o_proj : linear(H * d -> hidden_size)\n"
                  "        A_log, dt_bias : weight(H)"),
                 ("    g = logsigmoid(a_proj(x))",
                  "    g = -exp(A_log) * softplus(a_proj(x) + dt_bias)\n"
                  "    rwkv = -0.6065306597126334 * sigmoid(a_proj(x))\n"
                  "    rate = 2 * sigmoid(b_proj(x))"))
    types = _types(text)
    assert types["g"].range.hi <= 0
    assert types["rwkv"].range == Interval(-0.6065306597126334, 0.0)
    assert types["rate"].range == Interval(0.0, 2.0)


def test_static_values_are_time_invariant() -> None:
    types = _types(mixer(("    g = logsigmoid(a_proj(x))",
                          "    g = logsigmoid(a_proj(x))\n    gamma = 1 - 2 ** (-5 - arange(H))")))
    assert types["gamma"].kind is Kind.STATIC
    assert types["gamma"].range.within(0.0, 1.0) and types["gamma"].range.lo >= 0.96875 - 1e-12
    assert types["beta"].kind is Kind.TOKEN


def test_max_safe_chunk_matches_the_fp32_rule() -> None:
    """|lb| (C/2 + 1) log2(e) <= 124: the largest C for a gate bounded below by lb."""
    for lb in (-1.0, -5.0, -10.0, -0.1):
        c = max_safe_chunk(lb)
        assert abs(lb) * (c / 2 + 1) * math.log2(math.e) <= 124
        assert abs(lb) * ((c + 1) / 2 + 1) * math.log2(math.e) > 124
    assert max_safe_chunk(-10.0) == 15
