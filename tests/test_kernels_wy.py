"""KDA (per-channel gated delta), Gated DeltaProduct (products of Householder micro-steps),
Comba (IPLR) and RWKV-7 (DPLR) kernels against fla's naive references in float64.

Forward (o, final state) and the gradients of every input, the initial state included, under the
Triton interpreter in fp32 (max error / max |ref| <= 1e-4) and fp16 (<= 1e-2); ragged lengths,
one- to four-block chunks, head dims that are not powers of two, NaN-poisoned buffers, the gate,
rate and L2-norm prologue where the class takes one. The references: naive_recurrent_kda,
naive_recurrent_gated_delta_product, naive_chunk_comba (fla's recurrent Comba decays the state
before the read, its kernels after) and dplr_recurrence.
"""

import pytest
import torch
from test_kernels_support import Case, compare_cases

from linarch.kernels.spec import GateFn, KernelSpec, RateFn, Transition

KDA = KernelSpec("kda", Transition.CHANNEL_GATED_DELTA)
KDA_LAYER = KernelSpec("kda_layer", Transition.CHANNEL_GATED_DELTA, l2norm_qk=True,
                       gate=GateFn.LOGSIGMOID_SCALED, rate=RateFn.TWO_SIGMOID)
GDP = KernelSpec("gated_deltaproduct", Transition.GATED_DELTA, micro_steps=2)
GDP_LAYER = KernelSpec("gated_deltaproduct_layer", Transition.GATED_DELTA, micro_steps=2,
                       l2norm_qk=True, gate=GateFn.MAMBA, rate=RateFn.SIGMOID)
DP3 = KernelSpec("deltaproduct3", Transition.DELTA, micro_steps=3)
COMBA = KernelSpec("comba", Transition.IPLR)
COMBA_MAMBA = KernelSpec("comba_mamba", Transition.IPLR, gate=GateFn.MAMBA, rate=RateFn.SIGMOID)
RWKV7 = KernelSpec("rwkv7", Transition.DPLR)

CASES = [
    Case(KDA, B=2, T=80),
    Case(KDA, B=1, T=63, dtype=torch.float16, chunk_size=32),
    Case(KDA_LAYER, B=1, T=40, K=24, V=20, chunk_size=16, initial_state=False),
    Case(GDP, B=2, T=40),
    Case(GDP_LAYER, B=1, T=30, chunk_size=16),
    Case(DP3, B=1, T=37, dtype=torch.float16, chunk_size=32),
    Case(COMBA, B=2, T=80),
    Case(COMBA, B=1, T=63, dtype=torch.float16, chunk_size=32),
    Case(COMBA_MAMBA, B=1, T=40, K=24, V=20, chunk_size=16, initial_state=False),
    Case(RWKV7, B=1, T=50),
    Case(RWKV7, B=1, T=45, dtype=torch.float16, chunk_size=32),
    Case(RWKV7, B=1, T=30, K=24, V=20, chunk_size=16, initial_state=False),
]


@pytest.fixture(scope="module")
def results():
    return compare_cases(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_and_backward_match_reference(results, case):
    results[case.id].check()
