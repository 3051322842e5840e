"""Check ok means it runs: every program `linarch check` accepts compiles to a layer whose chunked
and recurrent forms agree, whose decoding equals one forward and which passes the causality
probe (linarch_testing.probe); every program it refuses gets located diagnostics.

Two sources of programs, sized for CI: programs assembled from the grammar's typed fragments
(linarch_testing.fragments, a fixed hypothesis seed), and chains of the search's typed
mutation operators applied to every example (at small sizes).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings

import linarch
from linarch.dsl.mutate import MutationError, apply, parse_program
from linarch.dsl.mutate_ops import OPERATORS
from linarch_testing.fragments import programs
from linarch_testing.probe import probe
from linarch_testing.torch_cases import EXAMPLES, example_path


@pytest.mark.timeout(600)
@settings(max_examples=40, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_programs_from_typed_fragments_keep_checks_promise(text: str) -> None:
    outcome = probe(text, "fragment.lin", length=13, stable_length=64)
    if not outcome.ran:
        assert outcome.errors, "refused without an error"
        assert all(d.span is not None for d in outcome.diagnostics), "an error without a place"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_mutated_examples_keep_checks_promise(name: str) -> None:
    """Three chains of two mutations per example; each accepted child runs as check says."""
    source = example_path(name).read_text(encoding="utf-8")
    kwargs = dict(EXAMPLES[name], hidden_size=32)
    seen = 0
    for seed in range(3):
        text = source
        for step in range(2):
            try:
                text = linarch.mutate(text, 100 * seed + step).source
            except MutationError:
                break
            outcome = probe(text, f"{name}.lin", length=13, stable_length=64, kwargs=kwargs)
            assert outcome.ran, [d.render() for d in outcome.diagnostics]
            seen += 1
    assert seen >= 3


@pytest.mark.timeout(300)
@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_each_mutation_operator_yields_programs_that_run(operator: str) -> None:
    """Every operator of the search's move set, on the first example it applies to."""
    for name in sorted(EXAMPLES):
        program = parse_program(example_path(name).read_text(encoding="utf-8"))
        out = apply(operator, program, random.Random(0))
        if out is None:
            continue
        kwargs = dict(EXAMPLES[name], hidden_size=32)
        outcome = probe(out[0], f"{name}.lin", length=13, stable_length=64, kwargs=kwargs)
        assert outcome.ran, [d.render() for d in outcome.diagnostics]
        return
    pytest.fail(f"{operator} applies to no example")
