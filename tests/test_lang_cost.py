"""Complexity (cost formulas, the linear class) and stability (|eig(A_t)| <= 1, the chunk-size
check): closed-form numbers checked against hand counts, and each warning on a minimal program."""

from __future__ import annotations

from pathlib import Path

import pytest

from linarch.api import analyze
from linarch.dsl.passes.complexity import transition_flops
from linarch_testing.lang import analysis, codes, diagnostics, mixer, only, spanned, with_update

DELTANET = Path(__file__).resolve().parent.parent / "examples" / "deltanet.lin"
QUADRATIC = ("    H = num_heads", "    complexity quadratic\n    H = num_heads")
LOGLINEAR = ("    H = num_heads", "    complexity loglinear\n    H = num_heads")
ATTENTION = ("    o = S @ q", "    o = S @ q + attention(q, k, v)")
FFT = ("v = v_proj(x) as [H, d]", "v = fft_conv(v_proj(x), k_proj(x), causal = true) as [H, d]")

# ------------------------------------------------------------------ closed-form costs at defaults

# DeltaNet at fla's defaults: hidden 1024, 4 heads, dk = dv = 256, short convs of width 4.
D, H, DK, DV, W = 1024, 4, 256, 256, 4


def test_deltanet_state_bytes_are_4_h_dv_dk() -> None:
    result = analyze(DELTANET)
    assert result.state_bytes == 4 * H * DV * DK == 1_048_576
    formula = "4*expand_k*expand_v*hidden_size**2/num_heads"  # 4 H (expand_v D / H)(expand_k D / H)
    assert str(result.result.unit.cost.state_bytes) == formula


def test_deltanet_parameter_count_matches_fla() -> None:
    """q, k, v, o projections, b_proj, three depthwise convs, o_norm over dv; the same total as
    sum(p.numel()) of fla.layers.DeltaNet(hidden_size=1024, num_heads=4)."""
    expected = 4 * D * D + H * D + 3 * D * W + DV
    assert analyze(DELTANET).params == expected == 4_210_944


def test_deltanet_transition_and_cache_costs() -> None:
    unit = analyze(DELTANET).result.unit
    (tr,) = unit.transitions
    rec, chunk = transition_flops(unit, tr)
    size = H * DV * DK
    assert unit.cost.at(unit, rec) == size * 4 + size  # one rank-one factor (4 per entry), write
    c = 64
    ut = H * (2 * c * DK + c * c / 3 + 2 * DK * DV)  # K K^T, the triangular solve, W h
    assert unit.cost.at(unit, chunk) == round(H * (2 * c * DK + 2 * c * DV) + ut)
    # decoding keeps the last width-1 inputs of each of the three convolutions, in fp32
    assert unit.cost.at(unit, unit.cost.cache_bytes) == 4 * 3 * D * (W - 1)


def test_deltanet_flops_are_dominated_by_projections_and_the_state() -> None:
    flops = analyze(DELTANET).flops_per_token
    projections = 2 * (4 * D * D + D * H)
    convs = 3 * 2 * D * W
    state = 5 * H * DV * DK + 2 * H * DV * DK  # transition + write, then the readout S @ q
    assert projections + convs + state <= flops <= 1.1 * (projections + convs + state)


# ------------------------------------------------------------------ the linear class


def test_attention_is_rejected_unless_declared_quadratic() -> None:
    text = mixer(ATTENTION)
    d = only(text, "LA401")
    assert spanned(text, d) == "attention(q, k, v)"
    assert "quadratic" in d.message and "T" in d.message
    result = analysis(mixer(QUADRATIC, ATTENTION))
    assert result.unit.cost.measured == "quadratic" and result.diagnostics == ()


def test_an_fft_is_loglinear() -> None:
    assert codes(mixer(FFT)) == ["LA401"]
    assert analysis(mixer(LOGLINEAR, FFT)).unit.cost.measured == "loglinear"
    assert codes(mixer(QUADRATIC, FFT)) == ["LA404"]  # declared higher than needed


def test_a_state_that_grows_with_the_sequence_is_rejected() -> None:
    text = mixer(("    o = S @ q", "    state Z : [H, d, T]\n    Z = 0.5 * Z + sum(v)\n"
                                 "    o = S @ q"))
    d = only(text, "LA402")
    assert spanned(text, d) == "state Z : [H, d, T]"
    assert "grows with the sequence length T" in d.message


def test_complexity_declarations() -> None:
    assert codes(mixer(("    H = num_heads", "    complexity cubic\n    H = num_heads"))) == [
        "LA403"]
    d = only(mixer(QUADRATIC), "LA404")
    assert d.message == "declared `complexity quadratic` but the mixer is linear"
    assert codes(mixer(("    H = num_heads", "    complexity linear\n    H = num_heads"))) == []


# ------------------------------------------------------------------ stability


def test_the_base_delta_rule_is_proven_stable() -> None:
    (verdict,) = analysis(with_update(
        "S = exp(g) * S @ (I - beta * outer(k, k)) + beta * outer(v, k)")).unit.stability
    assert verdict.stable
    assert verdict.reasons == ("log-decay in [-inf, 0]", "beta in [0, 1]", "k unit")


def test_la501_a_decay_not_proven_nonpositive() -> None:
    text = with_update("S = exp(beta) * S @ (I - beta * outer(k, k)) + beta * outer(v, k)")
    d = only(text, "LA501")
    assert spanned(text, d) == "exp(beta)"
    assert "log-decay of `S` is in [0, 1]" in d.message
    text = with_update("S = S / 0.5 + outer(v, k)")  # a constant decay of 2
    assert "decay of `S` is in [2, 2]" in only(text, "LA501").message
    (verdict,) = analysis(text).unit.stability
    assert not verdict.stable


def test_la502_a_rate_outside_zero_two() -> None:
    text = mixer(("beta = sigmoid(b_proj(x))", "beta = 3 * sigmoid(b_proj(x))"))
    d = only(text, "LA502")
    assert spanned(text, d) == "3 * sigmoid(b_proj(x))"
    assert "[0, 3]" in d.message
    # beta in [0, 2] (negative eigenvalues, DeltaProduct) is stable
    assert codes(mixer(("beta = sigmoid(b_proj(x))", "beta = 2 * sigmoid(b_proj(x))"))) == []


def test_la503_a_key_that_is_not_normalised() -> None:
    text = mixer(("k = l2norm(k_proj(x) as [H, d])", "k = k_proj(x) as [H, d]"))
    d = only(text, "LA503")
    assert spanned(text, d) == "I - beta * outer(k, k)"


def test_la504_general_low_rank_has_no_guarantee_but_symmetric_dplr_does() -> None:
    assert codes(with_update("S = S @ (I - beta * outer(q, k)) + beta * outer(v, k)")) == ["LA504"]
    text = with_update("S = S @ (diag(exp(gk)) - outer(k, k * beta)) + outer(v, k)")
    assert codes(text) == ["LA504"]
    symmetric = with_update("S = S @ (diag(exp(gk)) - outer(k, k)) + outer(v, k)")
    (verdict,) = analysis(symmetric).unit.stability
    assert "symmetric DPLR" in verdict.reasons


def test_la505_a_gate_bounded_at_minus_ten_overflows_chunk_64_but_not_8() -> None:
    text = mixer(("    g = logsigmoid(a_proj(x))", "    g = -10 * sigmoid(a_proj(x))"),
                 ("    S = S @ (I - beta", "    S = exp(g) * S @ (I - beta"))
    d = only(text, "LA505")
    assert spanned(text, d) == "exp(g)"
    assert "can reach -10: at chunk size 64" in d.message
    assert "(|lb| (C/2+1) log2 e = 476 > 124)" in d.message  # 10 * 33 * 1.4427
    assert d.hint == "use a chunk size <= 15 or bound the gate"
    assert codes(text, chunk_size=8) == []  # 10 * 5 * 1.4427 = 72 <= 124
    assert codes(text, chunk_size=16) == ["LA505"]  # 10 * 9 * 1.4427 = 130 > 124


@pytest.mark.parametrize("name", ["comba", "rwkv7"])
def test_examples_with_general_low_rank_carry_one_warning(name: str) -> None:
    path = DELTANET.parent / f"{name}.lin"
    assert [d.code for d in diagnostics(path.read_text(encoding="utf-8"))] == ["LA504"]
