"""Every generated kernel compiles for an NVIDIA H100 (sm_90) without a GPU: Triton lowers to a
cubin for any target, so GPU-only compile errors (types, layouts, shapes tl.dot refuses) show up
on a CPU machine too. One spec per kernel family: the UT-transform path, the scalar-decay path,
the diagonal-decay path."""

import os

import pytest

from linarch.kernels.spec import GateFn, KernelOptions, KernelSpec, RateFn, Transition

triton = pytest.importorskip("triton")
TOOLS = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")

SPECS = [
    KernelSpec("gated_deltanet", Transition.GATED_DELTA, l2norm_qk=True, gate=GateFn.MAMBA,
               rate=RateFn.SIGMOID),
    KernelSpec("simple_gla", Transition.SCALAR_DECAY, gate=GateFn.LOGSIGMOID_SCALED),
    KernelSpec("gla", Transition.DIAGONAL_DECAY),
]
EXPECTED = {
    "gated_deltanet": {"prologue", "l2norm_fwd", "intra", "wu", "fwd_state", "fwd_output",
                       "dv_local", "bwd_state", "dqkw", "wy_bwd", "epilogue", "l2norm_bwd"},
    "simple_gla": {"fwd_state", "fwd_output", "bwd_state", "grad"},
    "gla": {"intra", "fwd_state", "fwd_output", "bwd_state", "bwd_dav", "grad"},
}


@pytest.mark.skipif(not os.path.exists(TOOLS), reason="triton without its NVIDIA tools")
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_kernel_compiles_for_sm90(spec):
    from linarch.kernels.offline import compile_offline

    options = KernelOptions(dtype="bf16", autotune=False, num_warps=8, block_v=32, block_k=32)
    reports = compile_offline(spec, options, arch=90, B=1, T=256, H=2, K=64, V=64)
    kinds = {r.kernel.removeprefix(f"{spec.name}_").removesuffix("_kernel") for r in reports}
    assert kinds == EXPECTED[spec.name]
    for report in reports:
        assert 0 < report.registers <= 255 and report.mmas > 0, report.line()
