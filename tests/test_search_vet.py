"""Vetting in a worker: the shape a candidate is trained at, its costs there (the MAP-Elites
descriptors), and a behavioural fingerprint that separates a rewrite from a new idea."""

from __future__ import annotations

import random

import pytest

import linarch
from linarch.api import example_path
from linarch.dsl import mutate as engine
from linarch.search.executor import LocalExecutor
from linarch.search.novelty import behaviour_distance
from linarch.search.records import Profile
from linarch.search.sandbox import Limits, Outcome
from linarch.search.vet import VetJob, VetResult, behaviour, costs_at, vet

DELTA = example_path("deltanet").read_text()
STAGES = ("static", "numerics", "mqar")


@pytest.fixture(scope="module")
def vetted() -> VetResult:
    """DeltaNet vetted for the search's MQAR proxy, in a sandboxed worker, as the loop does."""
    with LocalExecutor(workers=1, limits=Limits(time_s=300)) as ex:
        ex.submit("vet", vet, VetJob("s000", DELTA, "proxy", STAGES))
        (result,) = ex.wait(timeout=300)
    assert result.outcome is Outcome.OK, result.error
    return result.value


def test_costs_are_taken_at_the_trained_shape(vetted):
    shape = dict(vetted.shape)
    assert shape["hidden_size"] == 64 and shape["num_heads"] == 2  # the proxy's model
    assert (vetted.flops_per_token, vetted.state_bytes) == costs_at(DELTA, shape)
    assert vetted.state_bytes == 4 * 2 * 32 * 32  # 4 H dv dk at d_model 64, 2 heads
    declared = linarch.analyze(DELTA)
    assert declared.state_bytes == 4 * 4 * 256 * 256  # its defaults: d_model 1024, 4 heads
    assert vetted.facts["metric"] == "accuracy" and "d_model 64" in vetted.facts["shape"]


def test_a_fractional_matched_width_is_kept():
    """Parameter matching shrinks linear attention to expand_k = expand_v = 0.875 at the
    proxy: the costs are taken there, not at a width truncated to 0 (which put every such
    candidate at 0 state bytes, in the wrong MAP-Elites cell)."""
    from linarch.search.taskfacts import trained_shape

    la = example_path("linear_attention").read_text()
    shape = trained_shape(la, "mqar", "proxy", DELTA)
    assert shape["expand_k"] == shape["expand_v"] == 0.875
    flops, state = costs_at(la, shape)
    assert state == 4 * 2 * 28 * 28 and flops > 0  # two heads of 0.875 * 64 / 2 = 28
    result = VetResult(tuple(shape.items()), flops, state, ())
    assert VetResult.from_dict(result.to_dict()) == result  # the journal keeps the float


def test_a_program_declared_wider_lands_in_the_same_cell():
    wide = DELTA.replace("hidden_size = 1024", "hidden_size = 4096")
    shape = {"hidden_size": 64, "num_heads": 2}
    assert costs_at(wide, shape) == costs_at(DELTA, shape)
    assert linarch.analyze(wide).state_bytes != linarch.analyze(DELTA).state_bytes
    cells = {Profile("x", "h", *costs_at(text, shape), ("delta (no gate)",), 1)
             .descriptor.cell for text in (wide, DELTA)}
    assert len(cells) == 1


def test_the_fingerprint_separates_rewrites_from_new_ideas(vetted):
    assert len(vetted.fingerprint) == 64
    rewrite = DELTA.replace("o = S @ q * dk ** -0.5", "o = dk ** -0.5 * (S @ q)")
    assert behaviour_distance(vetted.fingerprint, behaviour(rewrite)) < 1e-9
    gated = engine.apply("add_scalar_gate", engine.parse_program(DELTA), random.Random(0))[0]
    ideas = [gated, DELTA.replace("conv_size = 4", "conv_size = 3"),
             DELTA.replace("beta = sigmoid", "beta = 2 * sigmoid")]
    for idea in ideas:
        assert behaviour_distance(vetted.fingerprint, behaviour(idea)) > 0.05
