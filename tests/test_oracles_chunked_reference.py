"""benchmarks/bench_chunked_reference.py equals fla's naive recurrent references, in fp64, to 1e-10.

fla's references cast to fp32 internally; they run here in fp64 under
`linarch_testing.oracles.fp64.promote_fp32_to_fp64`. Ragged lengths (1, 63, 100 with chunk 64)
and head dim 60,
forward outputs, final states and the gradients of every input, initial state included.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from linarch_testing.oracles.deltanet import naive_core as delta_core
from linarch_testing.oracles.gated_deltanet import naive_core as gated_delta_core

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_chunked_reference.py"
_spec = importlib.util.spec_from_file_location("bench_chunked_reference", _PATH)
bench_chunked_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_chunked_reference)

B, H, D_K, D_V = 2, 2, 60, 60
TOL = dict(rtol=1e-10, atol=1e-10)


def _inputs(length: int, gated: bool, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    data = {
        "q": torch.randn(B, length, H, D_K, generator=gen, dtype=torch.float64),
        "k": F.normalize(torch.randn(B, length, H, D_K, generator=gen, dtype=torch.float64),
                         dim=-1),
        "v": torch.randn(B, length, H, D_V, generator=gen, dtype=torch.float64),
        "beta": torch.rand(B, length, H, generator=gen, dtype=torch.float64),
        "initial_state": torch.randn(B, H, D_K, D_V, generator=gen, dtype=torch.float64),
    }
    if gated:
        data["g"] = F.logsigmoid(torch.randn(B, length, H, generator=gen, dtype=torch.float64))
    return {name: t.requires_grad_() for name, t in data.items()}


def _forward_and_grads(fn, inputs: dict[str, torch.Tensor], probe: torch.Tensor,
                       probe_state: torch.Tensor):
    o, state = fn(**inputs)
    loss = (o * probe).sum() + (state * probe_state).sum()
    grads = torch.autograd.grad(loss, list(inputs.values()))
    return o, state, dict(zip(inputs, grads))


@pytest.mark.parametrize("length", [1, 63, 100])
@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated_delta"])
def test_chunked_reference_matches_fla_naive(length, gated):
    inputs = _inputs(length, gated, seed=length)
    probe = torch.randn(B, length, H, D_V, dtype=torch.float64)
    probe_state = torch.randn(B, H, D_K, D_V, dtype=torch.float64)
    if gated:
        chunked, naive = bench_chunked_reference.chunk_gated_delta_rule, gated_delta_core
    else:
        chunked, naive = bench_chunked_reference.chunk_delta_rule, delta_core

    o_ref, s_ref, g_ref = _forward_and_grads(naive, inputs, probe, probe_state)
    o, s, grads = _forward_and_grads(chunked, inputs, probe, probe_state)

    assert o.dtype == torch.float64 and s.dtype == torch.float64
    torch.testing.assert_close(o, o_ref, **TOL)
    torch.testing.assert_close(s, s_ref, **TOL)
    for name in inputs:
        torch.testing.assert_close(grads[name], g_ref[name], **TOL, msg=f"grad of {name}")


def test_chunked_reference_keeps_input_dtype_and_fp32_state():
    inputs = {name: t.detach().float() for name, t in _inputs(70, True, seed=1).items()}
    o, state = bench_chunked_reference.chunk_gated_delta_rule(**inputs)
    assert o.dtype == torch.float32 and state.dtype == torch.float32
    o64, state64 = bench_chunked_reference.chunk_gated_delta_rule(
        **{name: t.double() for name, t in inputs.items()})
    torch.testing.assert_close(o, o64.float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(state, state64.float(), rtol=1e-4, atol=1e-4)
