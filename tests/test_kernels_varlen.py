"""Packed variable-length batches (cu_seqlens, B = 1): every sequence must get exactly what it
gets alone (the reference run per sequence), forward and backward, with per-sequence initial and
final states, including a one-token sequence and one that ends mid-chunk; every family, and a
product of micro-steps whose tokens straddle chunk boundaries.
"""

import pytest
from test_kernels_support import Case, compare_cases

from linarch.kernels.spec import GateFn, KernelSpec, RateFn, Transition

GDN = KernelSpec("gated_deltanet", Transition.GATED_DELTA, l2norm_qk=True, gate=GateFn.MAMBA,
                 rate=RateFn.SIGMOID)
SPECS = [
    GDN,
    KernelSpec("deltanet", Transition.DELTA),
    KernelSpec("simple_gla", Transition.SCALAR_DECAY),
    KernelSpec("retnet", Transition.CONSTANT_DECAY),
    KernelSpec("gla", Transition.DIAGONAL_DECAY, gate=GateFn.LOGSIGMOID_SCALED),
]
NEW = [
    KernelSpec("kda", Transition.CHANNEL_GATED_DELTA),
    KernelSpec("comba", Transition.IPLR),
    KernelSpec("rwkv7", Transition.DPLR),
]
CASES = [Case(spec, B=1, T=100, varlen=(37, 1, 62), chunk_size=32) for spec in SPECS]
CASES += [Case(spec, B=1, T=60, varlen=(21, 1, 38), chunk_size=16) for spec in NEW]
CASES.append(Case(GDN, B=1, T=90, varlen=(64, 26), chunk_size=64, initial_state=False))
# micro rows: the boundaries count tokens, the kernels' chunks micro rows (3 per token)
CASES.append(Case(KernelSpec("deltaproduct", Transition.GATED_DELTA, micro_steps=3), B=1, T=30,
                  varlen=(11, 1, 18), chunk_size=16))


@pytest.fixture(scope="module")
def results():
    return compare_cases(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_packed_sequences_match_per_sequence_reference(results, case):
    results[case.id].check()
