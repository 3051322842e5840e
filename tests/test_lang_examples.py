"""Every shipped example checks with no errors, and the compiler recognises the transition class
the paper it reproduces describes (LANDSCAPE.md section 2), with the chunk algorithm that class
licenses."""

from __future__ import annotations

from pathlib import Path

import pytest

from linarch.api import analyze, show
from linarch.dsl.passes.transitions import Gate, TClass

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# example -> (class label printed by `linarch show`, class, gate, algorithm prefix)
EXPECTED = {
    "deltanet": ("delta (no gate)", TClass.DELTA, Gate.NONE, "UT transform"),
    "gated_deltanet": ("delta (scalar gate)", TClass.DELTA, Gate.SCALAR, "UT transform, scalar"),
    "kda": ("delta (diagonal gate)", TClass.DELTA, Gate.DIAGONAL, "UT transform, per-channel"),
    "deltaproduct": ("2 householders (scalar gate)", TClass.HOUSEHOLDER, Gate.SCALAR,
                     "UT transform over the interleaved sequence"),
    "comba": ("IPLR (scalar gate)", TClass.IPLR, Gate.SCALAR, "generalised UT transform"),
    # DPLR's diagonal lives in its diag(w) + outer(a, b) factor: a per-key-channel decay
    "rwkv7": ("DPLR", TClass.DPLR, Gate.DIAGONAL, "DPLR chunk form"),
    "gla": ("diagonal decay", TClass.DIAGONAL_DECAY, Gate.DIAGONAL, "sub-chunked diagonal decay"),
    "hgrn2": ("diagonal decay", TClass.DIAGONAL_DECAY, Gate.DIAGONAL,
              "sub-chunked diagonal decay"),
    "simple_gla": ("scalar decay", TClass.SCALAR_DECAY, Gate.SCALAR, "decay-masked chunks"),
    "mamba2": ("scalar decay", TClass.SCALAR_DECAY, Gate.SCALAR, "decay-masked chunks"),
    "retnet": ("constant decay", TClass.CONSTANT_DECAY, Gate.CONSTANT, "decay-masked chunks"),
    "linear_attention": ("identity", TClass.IDENTITY, Gate.NONE, "decay-masked chunks (no decay)"),
    "fusion_gated_fir": ("delta (constant gate)", TClass.DELTA, Gate.CONSTANT, "UT transform"),
    "content_sharp_router": ("delta (no gate)", TClass.DELTA, Gate.NONE, "UT transform"),
}

# the only diagnostics the examples carry: a general IPLR / DPLR transition has no cheap spectral
# guarantee, which the stability pass says as a warning
EXPECTED_WARNINGS = {"comba": ["LA504"], "rwkv7": ["LA504"]}


def test_the_table_covers_every_example() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.lin")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_checks_clean_and_has_its_class(name: str) -> None:
    analysis = analyze(EXAMPLES / f"{name}.lin")  # raises LinarchError on any error
    label, cls, gate, algorithm = EXPECTED[name]
    codes = [d.code for d in analysis.diagnostics]
    assert codes == EXPECTED_WARNINGS.get(name, [])
    assert not any(d.is_error for d in analysis.diagnostics)
    (transition,) = analysis.result.unit.transitions
    assert (transition.label, transition.cls, transition.gate) == (label, cls, gate)
    assert transition.algorithm.startswith(algorithm)
    assert analysis.transition_classes == (label,)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_show_reports_the_class(name: str) -> None:
    text = show(EXAMPLES / f"{name}.lin")
    label, *_ = EXPECTED[name]
    assert f"    class       {label}\n" in text
    assert "=> every value at token t depends only on tokens <= t" in text
    assert "linear in T" in text.splitlines()[0]


def test_deltaproduct_has_two_micro_steps_with_the_gate_on_the_first() -> None:
    unit = analyze(EXAMPLES / "deltaproduct.lin").result.unit
    (tr,) = unit.transitions
    assert len(tr.steps) == 2
    assert len(tr.steps[0].decays) == 1 and not tr.steps[1].decays
    assert [len(s.rank_ones) for s in tr.steps] == [1, 1]
    assert tr.householders == 2


def test_rates_and_keys_the_stability_pass_proves() -> None:
    """beta = sigmoid gives [0, 1]; DeltaProduct's 2 * sigmoid gives [0, 2]; keys are unit."""
    for name, rate in (("deltanet", "beta in [0, 1]"), ("deltaproduct", "beta in [0, 2]")):
        (verdict,) = analyze(EXAMPLES / f"{name}.lin").result.unit.stability
        assert verdict.stable
        assert rate in verdict.reasons and "k unit" in verdict.reasons


def test_gated_deltanet_state_and_defaults() -> None:
    """fla's GatedDeltaNet at hidden 2048, 6 heads of 256, expand_v 2: state [6, 512, 256]."""
    text = show(EXAMPLES / "gated_deltanet.lin")
    assert "state S [H, dv, dk] = [6, 512, 256]" in text
    assert "state bytes = 4*expand_v*head_dim**2*num_heads = 3,145,728 (fp32)" in text
