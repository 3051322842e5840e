"""The generated entry point refuses bad inputs with ValueErrors that name the actual shapes
(checked before any kernel launches, so this runs on CPU without the interpreter), the kernel
worker really keeps linarch and fla out of generated modules, and a file generated to autotune
runs under the interpreter."""

from pathlib import Path

import pytest
import torch
from test_kernels_support import (
    TOLERANCE,
    Case,
    kernel_job,
    loss_weights,
    reference_outputs,
    rel_err,
    run_jobs,
)

from linarch.kernels.loader import load_kernels, write_kernels
from linarch.kernels.spec import GateFn, KernelOptions, KernelSpec, RateFn, Transition

GDN = KernelSpec("gated_deltanet", Transition.GATED_DELTA, l2norm_qk=True, gate=GateFn.MAMBA,
                 rate=RateFn.SIGMOID)


@pytest.fixture(scope="module")
def chunk():
    return load_kernels(GDN, KernelOptions(dtype="fp32")).chunk_gated_deltanet


def inputs(B=1, T=8, H=2, K=16, V=16, **overrides):
    base = {"q": torch.randn(B, T, H, K), "k": torch.randn(B, T, H, K),
            "v": torch.randn(B, T, H, V), "g": torch.randn(B, T, H), "beta": torch.randn(B, T, H),
            "A_log": torch.zeros(H), "dt_bias": torch.zeros(H)}
    base.update(overrides)
    return base


@pytest.mark.parametrize("overrides, kwargs, message", [
    (dict(k=torch.randn(1, 8, 2, 8)), {}, r"q \[1, 8, 2, 16\] and k \[1, 8, 2, 8\]"),
    (dict(v=torch.randn(1, 7, 2, 16)), {}, r"v must be \[B, T, H, V\] = \[1, 8, 2, V\]"),
    (dict(q=torch.randn(1, 8, 2, 16).half()), {}, "generated for torch.float32"),
    (dict(g=torch.randn(1, 8)), {}, r"g must have shape \[1, 8, 2\], got \[1, 8\]"),
    (dict(A_log=torch.zeros(3)), {}, r"A_log must have shape \[2\]"),
    ({}, dict(initial_state=torch.zeros(1, 2, 16, 8)), r"initial_state must be .*\[1, 2, 16, 16\]"),
    (dict(q=torch.randn(1, 8, 2, 300), k=torch.randn(1, 8, 2, 300)), {}, "K=300 > 256"),
    ({}, dict(cu_seqlens=torch.tensor([0, 3, 7])), r"rise from 0 to T=8"),
    ({}, dict(cu_seqlens=torch.tensor([0.0, 8.0])), "int32/int64"),
])
def test_bad_inputs_raise_value_errors_naming_shapes(chunk, overrides, kwargs, message):
    x = inputs(**overrides)
    with pytest.raises(ValueError, match=message):
        chunk(x["q"], x["k"], x["v"], x["g"], x["beta"], x["A_log"], x["dt_bias"], **kwargs)


def test_packed_sequences_need_batch_one(chunk):
    x = inputs(B=2)
    with pytest.raises(ValueError, match="batch size must be 1"):
        chunk(*x.values(), cu_seqlens=torch.tensor([0, 4, 8]))


def test_worker_blocks_linarch_and_fla(tmp_path):
    for package in ("linarch", "fla"):
        module = tmp_path / f"needs_{package}.py"
        module.write_text(f"import {package}\n")
        job = {"module_path": str(module), "entry": "chunk", "args": [], "initial_state": None,
               "cu_seqlens": None, "weights": None}
        (result,) = run_jobs([job], workers=1)
        assert "blocked" in result["error"], result


def test_an_autotuned_file_runs_its_fixed_config_under_the_interpreter():
    """One file, every place it runs: a module generated to autotune on a GPU imports and runs
    under TRITON_INTERPRET=1 (no GPU to time configs on) with its first configs."""
    case = Case(KernelSpec("deltanet_tuned", Transition.DELTA), B=1, T=20, dtype=torch.float16)
    job = kernel_job(case)
    job["module_path"] = str(write_kernels(case.spec, KernelOptions(dtype="fp16")))
    assert "AUTOTUNE = True" in Path(job["module_path"]).read_text()
    (result,) = run_jobs([job], workers=1)
    assert "error" not in result, result.get("error")
    ref = reference_outputs(case)
    assert rel_err(result["o"], ref["o"]) <= TOLERANCE[case.dtype]
    assert loss_weights(case)[0].shape == result["o"].shape
