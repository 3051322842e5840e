"""KernelSpec / KernelOptions: frozen, hashable, validated at construction, with a stable hash."""

import dataclasses
import subprocess
import sys

import pytest

from linarch.kernels.spec import (
    GateFn,
    KernelOptions,
    KernelSpec,
    RateFn,
    SpecError,
    Transition,
    spec_hash,
)


def test_specs_are_frozen_hashable_and_accept_enum_values():
    spec = KernelSpec("gdn", "gated_delta", gate="mamba", rate="sigmoid")
    assert spec == KernelSpec("gdn", Transition.GATED_DELTA, gate=GateFn.MAMBA,
                              rate=RateFn.SIGMOID)
    assert len({spec, KernelSpec("gdn", Transition.GATED_DELTA, gate=GateFn.MAMBA,
                                 rate=RateFn.SIGMOID)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"
    assert hash(KernelOptions()) == hash(KernelOptions())


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="1bad", transition=Transition.DELTA), "identifier"),
    (dict(name="class", transition=Transition.DELTA), "identifier"),
    (dict(name="x", transition=Transition.IDENTITY, gate=GateFn.MAMBA), "per-token gate"),
    (dict(name="x", transition=Transition.DELTA, gate=GateFn.LOGSIGMOID_SCALED), "per-token"),
    (dict(name="x", transition=Transition.SCALAR_DECAY, rate=RateFn.SIGMOID), "rate beta"),
    (dict(name="x", transition=Transition.DPLR, rate=RateFn.SIGMOID), "rate beta"),
    (dict(name="x", transition=Transition.DIAGONAL_DECAY, gate=GateFn.MAMBA), "mamba"),
    (dict(name="x", transition=Transition.CHANNEL_GATED_DELTA, gate=GateFn.MAMBA), "per-channel"),
    (dict(name="x", transition=Transition.DPLR, gate=GateFn.LOGSIGMOID_SCALED), "as is"),
    (dict(name="x", transition=Transition.IPLR, l2norm_qk=True), "normalise"),
    (dict(name="x", transition=Transition.SCALAR_DECAY, gate_normalizer=0.0), "normalizer"),
    (dict(name="x", transition=Transition.GATED_DELTA, micro_steps=0), "micro_steps"),
    (dict(name="x", transition=Transition.GATED_DELTA, micro_steps=9), "between 1 and 8"),
    (dict(name="x", transition=Transition.CHANNEL_GATED_DELTA, micro_steps=2), "delta or gated"),
])
def test_impossible_specs_are_refused(kwargs, message):
    with pytest.raises(SpecError, match=message):
        KernelSpec(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(chunk_size=128), "chunk_size"),
    (dict(dtype="fp8"), "dtype"),
    (dict(num_warps=3), "power of two"),
    (dict(block_v=8), "at least 16"),
    (dict(solve_precision="fast"), "solve_precision"),
])
def test_impossible_options_are_refused(kwargs, message):
    with pytest.raises(SpecError, match=message):
        KernelOptions(**kwargs)


def test_hash_is_stable_across_processes_and_sensitive_to_every_field():
    spec = KernelSpec("gdn", Transition.GATED_DELTA, l2norm_qk=True)
    code = ("from linarch.kernels.spec import *; print(spec_hash(KernelSpec('gdn', "
            "Transition.GATED_DELTA, l2norm_qk=True), KernelOptions()))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert other == spec_hash(spec, KernelOptions())
    changed = [dataclasses.replace(spec, name="gdn2"), dataclasses.replace(spec, l2norm_qk=False),
               dataclasses.replace(spec, gate_normalizer=8.0),
               dataclasses.replace(spec, transition=Transition.DELTA),
               dataclasses.replace(spec, micro_steps=2)]
    hashes = {spec_hash(s, KernelOptions()) for s in [spec, *changed]}
    assert len(hashes) == len(changed) + 1



def test_transition_families_are_consistent():
    """Every class with a rank-one term takes the UT/WY path; rates and per-channel gates are
    named where the kernels read them."""
    wy = {t for t in Transition if t.uses_wy}
    assert wy == {Transition.DELTA, Transition.GATED_DELTA, Transition.CHANNEL_GATED_DELTA,
                  Transition.IPLR, Transition.DPLR}
    assert {t for t in Transition if t.has_rate} == wy - {Transition.DPLR}
    assert {t for t in Transition if t.per_channel_gate} == {
        Transition.DIAGONAL_DECAY, Transition.CHANNEL_GATED_DELTA, Transition.DPLR}
    assert {t for t in Transition if t.is_delta} == {Transition.DELTA, Transition.GATED_DELTA}
