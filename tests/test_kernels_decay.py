"""Linear attention, scalar-decay (simple GLA, Mamba2) and constant-decay (RetNet) kernels against
fla's naive references in float64: forward and every gradient, fp32 and fp16, ragged lengths,
NaN-poisoned buffers, under the Triton interpreter.
"""

import math

import pytest
import torch
from test_kernels_support import (
    TOLERANCE,
    Case,
    compare_cases,
    float64_references,
    interpreter_options,
    make_inputs,
    rel_err,
    run_jobs,
)

from linarch.kernels.loader import write_kernels
from linarch.kernels.spec import GateFn, KernelSpec, Transition

LINEAR = KernelSpec("linear_attn", Transition.IDENTITY)
LINEAR_L2 = KernelSpec("linear_attn_l2", Transition.IDENTITY, l2norm_qk=True)
SIMPLE_GLA = KernelSpec("simple_gla", Transition.SCALAR_DECAY)
SIMPLE_GLA_SIG = KernelSpec("simple_gla_sig", Transition.SCALAR_DECAY,
                            gate=GateFn.LOGSIGMOID_SCALED, gate_normalizer=8.0)
MAMBA2 = KernelSpec("mamba2", Transition.SCALAR_DECAY, gate=GateFn.MAMBA)
RETNET = KernelSpec("retnet", Transition.CONSTANT_DECAY)

CASES = [
    Case(LINEAR),
    Case(LINEAR_L2, B=1, T=63, dtype=torch.float16, chunk_size=32),
    Case(SIMPLE_GLA, chunk_size=32),
    Case(SIMPLE_GLA, B=1, dtype=torch.float16),
    Case(SIMPLE_GLA_SIG, B=1, T=63, chunk_size=16),
    Case(MAMBA2, B=1, T=100, K=24, V=20, initial_state=False),
    Case(RETNET),
    Case(RETNET, B=1, T=63, dtype=torch.float16, chunk_size=32),
]


@pytest.fixture(scope="module")
def results():
    return compare_cases(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_and_backward_match_reference(results, case):
    results[case.id].check()


def test_retnet_matches_fla_retention_reference():
    """RetNet's own oracle (head-first, fixed gamma_h = 1 - 2^(-5-h), no state), fwd + bwd."""
    from fla.ops.retention.naive import naive_retention

    case = Case(RETNET, B=2, T=80, H=2, initial_state=False)
    inputs = make_inputs(case)
    path = write_kernels(RETNET, interpreter_options(case.dtype))
    gen = torch.Generator().manual_seed(7)
    do = torch.randn(case.B, case.T, case.H, case.V, generator=gen, dtype=torch.float64)
    job = {"module_path": str(path), "entry": "chunk_retnet",
           "args": [inputs["q"], inputs["k"], inputs["v"], inputs["g_gamma"]],
           "initial_state": None, "cu_seqlens": None,
           "weights": (do, torch.zeros(case.B, case.H, case.K, case.V, dtype=torch.float64))}
    (result,) = run_jobs([job], workers=1)
    assert "error" not in result, result.get("error")

    leaves = [inputs[n].detach().double().requires_grad_() for n in ("q", "k", "v")]
    with float64_references():
        o = naive_retention(*(t.transpose(1, 2) for t in leaves)).transpose(1, 2)
        grads = torch.autograd.grad((o * do).sum(), leaves)
    assert math.isclose(inputs["g_gamma"][1].item(), math.log(1 - 2 ** -6), rel_tol=1e-6)
    errors = {"o": rel_err(result["o"], o)}
    errors.update({f"d{n}": rel_err(g, r) for n, g, r in zip("qkv", result["grads"], grads)})
    assert max(errors.values()) <= TOLERANCE[case.dtype], errors
