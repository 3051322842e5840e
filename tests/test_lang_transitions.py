"""The transition pass: every state update S_t = S_{t-1} A_t + B_t is put in the most specific
class of LANDSCAPE.md section 2, which decides the chunk algorithm; anything else is rejected with
the reason."""

from __future__ import annotations

import pytest

from linarch.dsl.passes.transitions import Gate, TClass
from linarch.dsl.recurrence import Layout
from linarch_testing.lang import UPDATE, analysis, mixer, only, spanned, with_update

# In the programs: q, k unit [H, d]; v [H, d]; beta in [0, 1] per head; g <= 0 per head;
# gk <= 0 per key channel [H, d].
CLASSES = [
    ("S = S + outer(v, k)", TClass.IDENTITY, Gate.NONE, "identity"),
    ("S = 0.9 * S + outer(v, k)", TClass.CONSTANT_DECAY, Gate.CONSTANT, "constant decay"),
    ("S = S / 2 + outer(v, k)", TClass.CONSTANT_DECAY, Gate.CONSTANT, "constant decay"),
    ("S = exp(g) * S + outer(v, k)", TClass.SCALAR_DECAY, Gate.SCALAR, "scalar decay"),
    ("S = S @ (exp(g) * I) + outer(v, k)", TClass.SCALAR_DECAY, Gate.SCALAR, "scalar decay"),
    ("S = S @ diag(exp(gk)) + outer(v, k)", TClass.DIAGONAL_DECAY, Gate.DIAGONAL,
     "diagonal decay"),
    ("S = S @ (I - beta * outer(k, k)) + beta * outer(v, k)", TClass.DELTA, Gate.NONE,
     "delta (no gate)"),
    ("S = exp(g) * S @ (I - beta * outer(k, k)) + beta * outer(v, k)", TClass.DELTA, Gate.SCALAR,
     "delta (scalar gate)"),
    ("S = S @ diag(exp(gk)) @ (I - beta * outer(k, k)) + beta * outer(v, k)", TClass.DELTA,
     Gate.DIAGONAL, "delta (diagonal gate)"),
    ("S = S @ (I - beta * outer(k, k)) @ (I - beta * outer(q, q)) + beta * outer(v, k)",
     TClass.HOUSEHOLDER, Gate.NONE, "2 householders (no gate)"),
    ("S = S @ (I + outer(k, k)) + outer(v, k)", TClass.IPLR, Gate.NONE, "IPLR (no gate)"),
    ("S = S @ (exp(g) * I - beta * outer(q, k)) + outer(v, k)", TClass.IPLR, Gate.SCALAR,
     "IPLR (scalar gate)"),
    ("S = S @ (diag(exp(gk)) - outer(k, k * beta)) + outer(v, k)", TClass.DPLR, Gate.DIAGONAL,
     "DPLR"),
    ("S = beta * S + outer(v, k)", TClass.ELEMENTWISE, Gate.SCALAR, "elementwise scan"),
]


@pytest.mark.parametrize(("update", "cls", "gate", "label"), CLASSES,
                         ids=[c[3] + ": " + c[0] for c in CLASSES])
def test_each_class_from_a_minimal_program(update, cls, gate, label) -> None:
    (tr,) = analysis(with_update(update)).unit.transitions
    assert (tr.cls, tr.gate, tr.label) == (cls, gate, label)


def test_the_most_specific_class_wins() -> None:
    """I - beta k k^T is a delta rule (not IPLR, not DPLR); a decay times I is a scalar decay
    (not a rank-one class); S @ I is the identity."""
    assert _cls("S = S @ (I - beta * outer(k, k)) + beta * outer(v, k)") is TClass.DELTA
    assert _cls("S = S @ I + outer(v, k)") is TClass.IDENTITY
    assert _cls("S = exp(g) * S @ I + outer(v, k)") is TClass.SCALAR_DECAY
    assert _cls("S = S @ diag(exp(gk)) + outer(v, k)") is TClass.DIAGONAL_DECAY


def test_identity_plus_outer_of_one_vector_is_iplr_not_delta() -> None:
    """A delta rule subtracts: I + a a^T has eigenvalue 1 + |a|^2 in [1, 2], which the
    stability pass names."""
    text = with_update("S = S @ (I + outer(k, k)) + outer(v, k)")
    (tr,) = analysis(text).unit.transitions
    assert tr.cls is TClass.IPLR and tr.householders == 0
    d = only(text, "LA502")
    assert "eigenvalue 1 + rate |k|^2 of `S`'s transition is in [1, 2]" in d.message


def test_micro_steps_are_several_assignments_in_one_token() -> None:
    """DeltaProduct: the gate on the first micro-step, one Householder each."""
    text = with_update("S = exp(g) * S @ (I - beta * outer(k, k)) + beta * outer(v, k)\n"
                       "S = S @ (I - beta * outer(q, q)) + beta * outer(v, q)")
    (tr,) = analysis(text).unit.transitions
    assert (tr.cls, tr.gate, tr.label) == (TClass.HOUSEHOLDER, Gate.SCALAR,
                                           "2 householders (scalar gate)")
    assert [len(s.rank_ones) for s in tr.steps] == [1, 1]
    assert [len(s.decays) for s in tr.steps] == [1, 0]
    assert len(tr.writes) == 2
    assert tr.formula == "exp(g) (I - beta * outer(k, k)) (I - beta * outer(q, q))"


def test_reading_a_state_between_micro_steps_is_rejected() -> None:
    text = with_update("S = S @ (I - beta * outer(k, k)) + beta * outer(v, k)\n"
                       "o1 = S @ q\n"
                       "S = S @ (I - beta * outer(q, q)) + beta * outer(v, q)")
    d = only(text, "LA109")
    assert spanned(text, d) == "S @ q"


def test_the_formula_shows_the_transition() -> None:
    (tr,) = analysis(with_update(
        "S = exp(g) * S @ (I - beta * outer(k, k)) + beta * outer(v, k)")).unit.transitions
    assert tr.formula == "exp(g) (I - beta * outer(k, k))"
    assert tr.algorithm == "UT transform, scalar gate"


@pytest.mark.parametrize(("update", "code", "span", "message"), [
    ("S = tanh(S) + beta * outer(v, k)", "LA301", "tanh(S)", "non-linear"),
    ("S = S * S + beta * outer(v, k)", "LA301", "S * S", "multiplies itself"),
    ("S = beta / S + outer(v, k)", "LA301", "beta / S", "denominator"),
    ("S = S @ (I - beta * outer(S @ q, k)) + outer(v, k)", "LA301",
     "S @ (I - beta * outer(S @ q, k))", "multiplies itself"),
    ("S = (I - beta * outer(k, k)) @ S + beta * outer(v, k)", "LA302",
     "(I - beta * outer(k, k)) @ S", "from the left"),
    ("S = S @ (I - beta * outer(k, k)) + S + outer(v, k)", "LA302",
     "S = S @ (I - beta * outer(k, k)) + S + outer(v, k)", "appears in 2 terms"),
    ("S = S @ (I + outer(q, k) + outer(k, q)) + outer(v, k)", "LA302",
     "I + outer(q, k) + outer(k, q)", "no known structure"),
    ("S = outer(v, k) - S", "LA302", "S = outer(v, k) - S", "subtracted"),
    ("S = S @ (I - beta * outer(k, k))", "LA303", "S = S @ (I - beta * outer(k, k))",
     "writes no input"),
])
def test_updates_without_a_chunk_form_are_rejected_where_they_fail(update, code, span, message):
    text = with_update(update)
    d = only(text, code)
    assert spanned(text, d) == span
    assert message in d.message


def _cls(update: str) -> TClass:
    (tr,) = analysis(with_update(update)).unit.transitions
    return tr.cls


# A state of per-head vectors E [H, d] read whole: an EMA of the values (HierGate-MEM's paths).
EMA = (("    state S : [H, d, d]\n", "    state E : [H, d]\n"),
       ("    o = S @ q\n", "    o = E\n"))


@pytest.mark.parametrize(("update", "layout"), [
    ("E = exp(g) * E + (1 - exp(g)) * v", Layout.VECTORS),  # one decay per head
    ("E = exp(gk) * E + (1 - exp(gk)) * v", Layout.ENTRIES),  # one decay per entry
])
def test_a_vector_state_is_chunked_with_one_chunk_head_per_decay(update, layout) -> None:
    """The chunk form's cost is one C x C matrix per chunk head: a per-head decay keeps the head
    as the chunk head and its d entries as values (VECTORS), instead of one chunk head per entry
    (ENTRIES, d times the work: HierGate-MEM trained 13x slower per step with it)."""
    (tr,) = analysis(mixer((UPDATE, f"    {update}\n"), *EMA)).unit.transitions
    assert tr.chunk_layout is layout
