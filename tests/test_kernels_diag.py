"""GLA-style diagonal-decay kernels against fla's naive GLA recurrence in float64: forward and the
gradients of q, k, v, the per-channel gate and the initial state, under the Triton interpreter.
"""

import pytest
import torch
from test_kernels_support import Case, compare_cases

from linarch.kernels.spec import GateFn, KernelSpec, SpecError, Transition

GLA = KernelSpec("gla", Transition.DIAGONAL_DECAY, gate=GateFn.LOGSIGMOID_SCALED)
GLA_LOG = KernelSpec("gla_log", Transition.DIAGONAL_DECAY)

CASES = [
    Case(GLA, B=1, T=100, chunk_size=64),
    Case(GLA, B=1, T=63, dtype=torch.float16, chunk_size=32),
    Case(GLA_LOG, B=2, T=40, K=24, V=20, chunk_size=16, initial_state=False),
]


@pytest.fixture(scope="module")
def results():
    return compare_cases(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_and_backward_match_reference(results, case):
    results[case.id].check()


def test_diagonal_decay_refuses_l2norm_and_the_mamba_gate():
    with pytest.raises(SpecError, match="l2norm_qk"):
        KernelSpec("gla", Transition.DIAGONAL_DECAY, l2norm_qk=True)
    with pytest.raises(SpecError, match="mamba"):
        KernelSpec("gla", Transition.DIAGONAL_DECAY, gate=GateFn.MAMBA)
