"""Every compiled example layer traces whole under torch.compile, and the traced layer computes
what the eager one does.

A graph break splits a layer into separately compiled pieces with Python between them, which
costs the fusion torch.compile is used for: with the break that a generator inside ``math.prod``
caused in the shared runtime, a compiled proxy step of DeltaNet was 0.90x the eager one, and
without it 0.69x (benchmarks/bench_proxy_step.py). ``fullgraph=True`` turns any break into an
error, so these tests name the line that breaks. Every example is captured with the ``eager``
backend (dynamo's capture, run by the same kernels in the same order, so the outputs and
gradients are bit for bit the eager layer's, and no C++ is compiled); DeltaNet also goes through
inductor, the backend a user compiles with, forward and backward.
"""

from __future__ import annotations

import pytest
import torch

from linarch_testing.torch_cases import EXAMPLES, build, inputs, rel_err

NAMES = sorted(EXAMPLES)


@pytest.mark.parametrize("name", NAMES)
def test_layer_traces_as_one_graph_and_matches_eager_forward_and_backward(name):
    torch._dynamo.reset()
    layer = build(name)
    x = inputs(2, 70).requires_grad_()  # two chunks of 64, the second padded
    weight = inputs(2, 70, seed=2)
    compiled = torch.compile(layer, fullgraph=True, backend="eager")

    eager_out = layer(x)[0]
    eager_grad, = torch.autograd.grad((eager_out * weight).sum(), x)
    out = compiled(x)[0]
    grad, = torch.autograd.grad((out * weight).sum(), x)

    assert torch.equal(out, eager_out)
    assert torch.equal(grad, eager_grad)


def test_deltanet_compiles_with_inductor_forward_and_backward():
    """Inductor fuses and reorders fp32 arithmetic, so the comparison is to fp32 rounding."""
    torch._dynamo.reset()
    layer = build("deltanet", dtype=torch.float32)
    x = inputs(2, 70, dtype=torch.float32).requires_grad_()
    weight = inputs(2, 70, seed=2, dtype=torch.float32)
    compiled = torch.compile(layer, fullgraph=True, backend="inductor")

    eager_out = layer(x)[0]
    eager_grad, = torch.autograd.grad((eager_out * weight).sum(), x)
    out = compiled(x)[0]
    grad, = torch.autograd.grad((out * weight).sum(), x)

    assert rel_err(out, eager_out) < 1e-5
    assert rel_err(grad, eager_grad) < 1e-5
